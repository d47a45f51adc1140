// ingest-core on Azure Functions Flex Consumption: `azd up` (azure.yaml) or
// `az deployment sub create -l <region> -f infra/main.bicep -p environmentName=<name>`.
// Creates the resource group and everything in it (resources.bicep); see README.md,
// "Deploy to Azure".
targetScope = 'subscription'

@minLength(1)
@maxLength(40)
@description('Name of the environment (azd: AZURE_ENV_NAME); names and tags the resources.')
param environmentName string

@minLength(1)
@description('Azure region of every resource, e.g. westeurope. Flex Consumption must be offered there.')
param location string

@description('Resource group to create; default rg-<environmentName>.')
param resourceGroupName string = ''

@description('Landing containers Event Grid may name (INGEST_LANDING_CONTAINERS); the first is the blob trigger path.')
param landingContainers array = [
  'landing'
]

@description('Path of the Delta table in the lake container, e.g. orders.')
param tableName string = 'orders'

@description('Create the Event Grid subscriptions. They need the deployed functions (the blob extension key, the ingest_replay function): false on the first provision, true once the code is deployed (azure.yaml does this after deploy).')
param subscribeEvents bool = false

@description('Maximum instances Flex Consumption may scale out to.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

@description('Memory of each instance in MB (Flex: 512, 2048 or 4096).')
@allowed([
  512
  2048
  4096
])
param instanceMemoryMB int = 2048

var tags = {
  'azd-env-name': environmentName
}

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
  location: location
  tags: tags
}

module resources 'resources.bicep' = {
  name: 'ingest-core-resources'
  scope: rg
  params: {
    environmentName: environmentName
    location: location
    tags: tags
    landingContainers: landingContainers
    tableName: tableName
    subscribeEvents: subscribeEvents
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
  }
}

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = resources.outputs.functionAppName
output AZURE_LANDING_ACCOUNT string = resources.outputs.landingAccountName
output AZURE_LAKE_ACCOUNT string = resources.outputs.lakeAccountName
output INGEST_TABLE_URI string = resources.outputs.tableUri
output INGEST_LEDGER_URI string = resources.outputs.ledgerUri
output AZURE_CLIENT_ID string = resources.outputs.identityClientId
