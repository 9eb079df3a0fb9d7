"""``make demo``: localbatch + Airflow with AwsBatchExecutor running an example DAG."""
