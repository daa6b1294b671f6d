# The Airflow image of docker-compose.yml: the official image of the Airflow version the tests pin
# (apache-airflow== in constraints-test.txt), with this repository's package installed.
FROM apache/airflow:3.3.2-python3.11

USER airflow

# Only what pip needs to build the package: the build context (the repository) also holds .venv and node_modules.
COPY --chown=airflow:0 pyproject.toml README.md /opt/aml-airflow-provider/
COPY --chown=airflow:0 aml_airflow_provider /opt/aml-airflow-provider/aml_airflow_provider

# "apache-airflow==${AIRFLOW_VERSION}" (set by the base image) keeps pip from changing the image's Airflow.
# The Celery provider ships with the official image; it is named so that the workers' executor is there
# whatever the base image's extras.
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" /opt/aml-airflow-provider \
        apache-airflow-providers-celery

# Development login for the simple auth manager: docker-compose.yml declares the user (admin, role admin)
# and points AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE here. Group-writable: the auth manager opens
# it for appending, and the containers may run as any UID in group 0.
RUN echo '{"admin": "admin"}' > /opt/airflow/simple_auth_manager_passwords.json \
    && chmod 664 /opt/airflow/simple_auth_manager_passwords.json
