-- One server, one database per component.
CREATE DATABASE prefect;
CREATE DATABASE mlflow;
