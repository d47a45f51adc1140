// Everything ingest-core needs in one resource group: a Flex Consumption Function App running
// as a user-assigned identity, the landing (ADLS Gen2) and lake (ADLS Gen2) accounts, the
// ledger table, Application Insights, and an Event Grid system topic on the landing account
// whose subscriptions feed the app, with a dead-letter container. No keys: every client signs
// in with the identity (shared-key access is off on every account).

param environmentName string
param location string
param tags object
param landingContainers array
param tableName string
param subscribeEvents bool
param maximumInstanceCount int
param instanceMemoryMB int

var token = take(toLower(uniqueString(subscription().id, resourceGroup().id, environmentName)), 11)
var ledgerTableName = 'ingestledger'
var lakeContainerName = 'lake'
var deadLetterContainerName = 'deadletter'
var deploymentContainerName = 'app-package'
var arrivalContainer = landingContainers[0]
var otherLandingContainers = skip(landingContainers, 1)
var completedWrites = [
  'PutBlob'
  'PutBlockList'
  'CopyBlob'
  'FlushWithClose'
  'SftpCommit'
]
var renames = [
  'RenameFile'
  'RenameDirectory'
  'SftpRename'
]
var roleIds = {
  blobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  blobDataContributor: 'ba92f5b4-2d11-453d-a403-e96b0029c9fe'
  queueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
  tableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  monitoringMetricsPublisher: '3913510d-42f4-4e42-8a64-420c390055eb'
}

// -- identity and monitoring ---------------------------------------------------------------

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: 'id-ingest-${token}'
  location: location
  tags: tags
}

resource logs 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: 'log-ingest-${token}'
  location: location
  tags: tags
  properties: {
    sku: {
      name: 'PerGB2018'
    }
    retentionInDays: 30
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: 'appi-ingest-${token}'
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: logs.id
    DisableLocalAuth: true
  }
}

// -- storage ----------------------------------------------------------------------------------

// The Functions host's own account: AzureWebJobsStorage and the deployment package.
resource hostStorage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: Flex Consumption without VNet integration reaches its storage over the public endpoint; access needs Entra identity (shared keys are off)
  // checkov:skip=CKV_AZURE_59: same as CKV_AZURE_35: public network access is how the host reaches it; no anonymous or key access is allowed
  // checkov:skip=CKV_AZURE_43: the name is 'st' + four letters + 11 characters of uniqueString(): 17 lowercase letters and digits, within the rules; the check cannot evaluate the interpolation
  name: 'sthost${token}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_GZRS'
  }
  properties: {
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource hostBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: hostStorage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: hostBlobs
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Landing zone (ADLS Gen2): the landing containers, Event Grid's dead letters, the ledger table.
resource landing 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: producers (SFTP clients, pipelines) and the Flex app without VNet integration write and read it over the public endpoint; access needs Entra identity (shared keys are off)
  // checkov:skip=CKV_AZURE_59: same as CKV_AZURE_35: public network access with identity-only authorization
  // checkov:skip=CKV_AZURE_43: the name is 'st' + four letters + 11 characters of uniqueString(): 17 lowercase letters and digits, within the rules; the check cannot evaluate the interpolation
  name: 'stland${token}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_GZRS'
  }
  properties: {
    isHnsEnabled: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource landingBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: landing
  name: 'default'
}

resource landingContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = [
  for name in landingContainers: {
    parent: landingBlobs
    name: name
    properties: {
      publicAccess: 'None'
    }
  }
]

resource deadLetterContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: landingBlobs
  name: deadLetterContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource landingTables 'Microsoft.Storage/storageAccounts/tableServices@2023-05-01' = {
  parent: landing
  name: 'default'
}

resource ledgerTable 'Microsoft.Storage/storageAccounts/tableServices/tables@2023-05-01' = {
  parent: landingTables
  name: ledgerTableName
}

// The lake (ADLS Gen2): the Delta tables.
resource lake 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  // checkov:skip=CKV_AZURE_35: the Flex app without VNet integration writes the Delta log over the public endpoint; access needs Entra identity (shared keys are off)
  // checkov:skip=CKV_AZURE_59: same as CKV_AZURE_35: public network access with identity-only authorization
  // checkov:skip=CKV_AZURE_43: the name is 'st' + four letters + 11 characters of uniqueString(): 17 lowercase letters and digits, within the rules; the check cannot evaluate the interpolation
  name: 'stlake${token}'
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: 'Standard_GZRS'
  }
  properties: {
    isHnsEnabled: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
  }
}

resource lakeBlobs 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: lake
  name: 'default'
}

resource lakeContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: lakeBlobs
  name: lakeContainerName
  properties: {
    publicAccess: 'None'
  }
}

// -- roles of the identity -------------------------------------------------------------------

// The host: its state, locks and the blob trigger's queues; the deployment package.
resource hostRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in [roleIds.blobDataOwner, roleIds.queueDataContributor]: {
    name: guid(hostStorage.id, identity.id, role)
    scope: hostStorage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
      principalId: identity.properties.principalId
      principalType: 'ServicePrincipal'
    }
  }
]

// Landing: the blob trigger (INGEST_STORAGE) needs Blob Data Owner and Queue Data Contributor,
// ingest_core reads the files and claims rows in the ledger, Event Grid writes dead letters.
resource landingRoles 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in [roleIds.blobDataOwner, roleIds.queueDataContributor, roleIds.tableDataContributor]: {
    name: guid(landing.id, identity.id, role)
    scope: landing
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role)
      principalId: identity.properties.principalId
      principalType: 'ServicePrincipal'
    }
  }
]

// Lake: deltalake writes data files and the _delta_log, and maintenance vacuums.
resource lakeRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(lake.id, identity.id, roleIds.blobDataContributor)
  scope: lake
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.blobDataContributor)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// Application Insights with local auth off takes telemetry signed by the identity.
resource telemetryRole 'Microsoft.Authorization/roleAssignments@2022-04-01' = {
  name: guid(appInsights.id, identity.id, roleIds.monitoringMetricsPublisher)
  scope: appInsights
  properties: {
    roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', roleIds.monitoringMetricsPublisher)
    principalId: identity.properties.principalId
    principalType: 'ServicePrincipal'
  }
}

// -- the Function App (Flex Consumption) ----------------------------------------------------

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  // checkov:skip=CKV_AZURE_225: Flex Consumption is zone redundant only in the regions that offer it; set zoneRedundant: true on this plan where yours does
  name: 'plan-ingest-${token}'
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource app 'Microsoft.Web/sites@2024-04-01' = {
  // checkov:skip=CKV_AZURE_222: Event Grid delivers to the blob extension's webhook and to ingest_replay over the public endpoint; without VNet integration and private endpoints on the event path there is no other way in
  // checkov:skip=CKV_AZURE_17: Event Grid presents no client certificate; its deliveries carry the blob extension's system key, the status endpoints function keys
  // checkov:skip=CKV_AZURE_212: Flex Consumption scales from zero by design; a cold start only delays ingestion, as Event Grid retries and the blob trigger's queue hold the work
  // checkov:skip=CKV_AZURE_213: the app serves no health endpoint; Flex Consumption places instances itself, and failures surface as retries, dead letters and the ledger's failed rows
  name: 'func-ingest-${token}'
  location: location
  tags: union(tags, {
    'azd-service-name': 'ingest'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${hostStorage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identity.id
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      // No FUNCTIONS_WORKER_RUNTIME: on Flex Consumption the runtime is functionAppConfig.runtime.
      appSettings: [
        {
          name: 'AzureWebJobsStorage__accountName'
          value: '${hostStorage.name}'
        }
        {
          name: 'AzureWebJobsStorage__credential'
          value: 'managedidentity'
        }
        {
          name: 'AzureWebJobsStorage__clientId'
          value: '${identity.properties.clientId}'
        }
        // The blob trigger's connection (connection="INGEST_STORAGE"), identity-based.
        {
          name: 'INGEST_STORAGE__blobServiceUri'
          value: '${landing.properties.primaryEndpoints.blob}'
        }
        {
          name: 'INGEST_STORAGE__queueServiceUri'
          value: '${landing.properties.primaryEndpoints.queue}'
        }
        {
          name: 'INGEST_STORAGE__credential'
          value: 'managedidentity'
        }
        {
          name: 'INGEST_STORAGE__clientId'
          value: '${identity.properties.clientId}'
        }
        // ingest_core signs in with DefaultAzureCredential: the user-assigned identity.
        {
          name: 'AZURE_CLIENT_ID'
          value: '${identity.properties.clientId}'
        }
        {
          name: 'INGEST_STORAGE_ACCOUNT'
          value: '${landing.name}'
        }
        {
          name: 'INGEST_TABLE_URI'
          value: 'abfss://${lakeContainerName}@${lake.name}.dfs.${environment().suffixes.storage}/${tableName}'
        }
        {
          name: 'INGEST_LEDGER_URI'
          value: 'azure-table://${ledgerTableName}'
        }
        {
          name: 'INGEST_LANDING_PATH'
          value: '${arrivalContainer}/{name}'
        }
        {
          name: 'INGEST_LANDING_CONTAINERS'
          value: '${join(landingContainers, ',')}'
        }
        {
          name: 'INGEST_MAINTENANCE_SCHEDULE'
          value: '0 */15 * * * *'
        }
        {
          name: 'APPLICATIONINSIGHTS_CONNECTION_STRING'
          value: '${appInsights.properties.ConnectionString}'
        }
        {
          name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING'
          value: 'ClientId=${identity.properties.clientId};Authorization=AAD'
        }
      ]
    }
  }
  dependsOn: [
    hostRoles
    landingRoles
    lakeRole
    telemetryRole
    deploymentContainer
  ]
}

// -- Event Grid ------------------------------------------------------------------------------

resource topic 'Microsoft.EventGrid/systemTopics@2022-06-15' = {
  name: 'evgt-landing-${token}'
  location: location
  tags: tags
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identity.id}': {}
    }
  }
  properties: {
    source: landing.id
    topicType: 'Microsoft.Storage.StorageAccounts'
  }
}

var deadLetter = {
  identity: {
    type: 'UserAssigned'
    userAssignedIdentity: identity.id
  }
  deadLetterDestination: {
    endpointType: 'StorageBlob'
    properties: {
      resourceId: landing.id
      blobContainerName: deadLetterContainerName
    }
  }
}

var retryPolicy = {
  maxDeliveryAttempts: 30
  eventTimeToLiveInMinutes: 1440
}

// Completed writes in the arrival container -> the blob trigger (ingest_on_arrival), through
// the blob extension's webhook: it queues the event and answers Event Grid at once.
resource onArrival 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (subscribeEvents) {
  parent: topic
  name: 'ingest-on-arrival'
  properties: {
    destination: {
      endpointType: 'WebHook'
      properties: {
        endpointUrl: 'https://${app.properties.defaultHostName}/runtime/webhooks/blobs?functionName=Host.Functions.ingest_on_arrival&code=${listKeys('${app.id}/host/default', '2024-04-01').systemKeys.blobs_extension}'
        maxEventsPerBatch: 1
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.Storage.BlobCreated'
      ]
      subjectBeginsWith: '/blobServices/default/containers/${arrivalContainer}/blobs/'
      advancedFilters: [
        {
          operatorType: 'StringIn'
          key: 'data.api'
          values: completedWrites
        }
      ]
    }
    retryPolicy: retryPolicy
    deadLetterWithResourceIdentity: deadLetter
  }
  dependsOn: [
    deadLetterContainer
    landingRoles
  ]
}

// Renames (no data.url: the blob extension cannot take them) in every landing container ->
// the Event Grid trigger (ingest_replay), which ingests data.destinationUrl.
resource onRename 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (subscribeEvents) {
  parent: topic
  name: 'ingest-renamed'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${app.id}/functions/ingest_replay'
        maxEventsPerBatch: 1
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.Storage.BlobRenamed'
        'Microsoft.Storage.DirectoryRenamed'
      ]
      advancedFilters: [
        {
          operatorType: 'StringIn'
          key: 'data.api'
          values: renames
        }
        {
          operatorType: 'StringBeginsWith'
          key: 'subject'
          values: [for name in landingContainers: '/blobServices/default/containers/${name}/blobs/']
        }
      ]
    }
    retryPolicy: retryPolicy
    deadLetterWithResourceIdentity: deadLetter
  }
  dependsOn: [
    onArrival
  ]
}

// Completed writes in the other landing containers -> the Event Grid trigger.
resource onOtherLanding 'Microsoft.EventGrid/systemTopics/eventSubscriptions@2022-06-15' = if (subscribeEvents && !empty(otherLandingContainers)) {
  parent: topic
  name: 'ingest-other-landing'
  properties: {
    destination: {
      endpointType: 'AzureFunction'
      properties: {
        resourceId: '${app.id}/functions/ingest_replay'
        maxEventsPerBatch: 1
      }
    }
    eventDeliverySchema: 'EventGridSchema'
    filter: {
      includedEventTypes: [
        'Microsoft.Storage.BlobCreated'
      ]
      advancedFilters: [
        {
          operatorType: 'StringIn'
          key: 'data.api'
          values: completedWrites
        }
        {
          operatorType: 'StringBeginsWith'
          key: 'subject'
          values: [for name in otherLandingContainers: '/blobServices/default/containers/${name}/blobs/']
        }
      ]
    }
    retryPolicy: retryPolicy
    deadLetterWithResourceIdentity: deadLetter
  }
  dependsOn: [
    onRename
  ]
}

output functionAppName string = app.name
output landingAccountName string = landing.name
output lakeAccountName string = lake.name
output tableUri string = 'abfss://${lakeContainerName}@${lake.name}.dfs.${environment().suffixes.storage}/${tableName}'
output ledgerUri string = 'azure-table://${ledgerTableName}'
output identityClientId string = identity.properties.clientId
