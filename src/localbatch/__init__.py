"""localbatch: a service that speaks the AWS Batch API and runs each job as a local process."""

__version__ = "0.1.0"
