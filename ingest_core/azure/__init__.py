"""Azure plumbing shared by the Azure adapters: settings, URLs and credentials.

Nothing here imports an Azure SDK at module level: a local run never pays for them.
"""
