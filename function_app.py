"""The Azure Functions app (Python v2 model): triggers wired to ingest_core, nothing else.

App settings (see local.settings.sample.json): INGEST_TABLE_URI, INGEST_LEDGER_URI,
INGEST_STORAGE_CONNECTION or INGEST_STORAGE_ACCOUNT (what ingest_core reads),
INGEST_STORAGE (the blob trigger's connection), INGEST_LANDING_PATH,
INGEST_LANDING_CONTAINERS and INGEST_MAINTENANCE_SCHEDULE; INGEST_ROUTES (with
INGEST_LEDGER_URI) routes each blob to its own table instead.
"""


import azure.functions as func
import azurefunctions.extensions.bindings.blob as blob

from ingest_core import functions
from ingest_core.telemetry import configure_telemetry

configure_telemetry()
app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.function_name("ingest_on_arrival")
@app.blob_trigger(
    arg_name="client",
    path="%INGEST_LANDING_PATH%",
    connection="INGEST_STORAGE",
    source=func.BlobSource.EVENT_GRID,
)
def ingest_on_arrival(client: blob.BlobClient) -> None:
    """Ingest a blob as it lands; the host passes a client (no bytes), the body streams from it."""
    functions.on_blob_client(client)


@app.function_name("ingest_replay")
@app.event_grid_trigger(arg_name="event")
def ingest_replay(event: func.EventGridEvent) -> None:
    """Ingest the blob of a BlobCreated event: redelivered, dead-lettered or synthetic."""
    functions.on_event(event)


@app.function_name("file_status")
@app.route(route="files/{sha256}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def file_status(req: func.HttpRequest) -> func.HttpResponse:
    """The ledger row(s) of one content: 200 JSON, 404 unknown, 400 malformed sha256."""
    return functions.file_status(req)


@app.function_name("list_files")
@app.route(route="files", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
def list_files(req: func.HttpRequest) -> func.HttpResponse:
    """Ledger rows filtered by `path` and `state`, as JSON."""
    return functions.list_files(req)


@app.function_name("maintenance")
@app.timer_trigger(arg_name="timer", schedule="%INGEST_MAINTENANCE_SCHEDULE%")
def maintenance(timer: func.TimerRequest) -> None:
    """Re-drive stalled and failed files, then compact and checkpoint each Delta table."""
    functions.run_maintenance(past_due=timer.past_due)
