"""The feedback report: how users judged a dataset's models, drawn from its manifests."""
