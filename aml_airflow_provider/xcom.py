"""XCom a step task pushes: one per output (the output's ``azureml://`` URI, under the output's name),
and one dict of facts about the step run under :data:`STEP_RUN`.

``STEP_RUN`` contains a '.', which an output name cannot, so it never collides with an output.
One dict rather than a key per fact: every XCom push is a call to Airflow's API.
"""

#: Key of the step run's facts.
STEP_RUN = "aml.step_run"

# Keys inside the facts.
#: ``azureml://`` URI of the step run's record (metrics, tags, files, driver log).
RECORD = "record"
#: The step run's fingerprint (a consumer's input identity is its producer's fingerprint).
FINGERPRINT = "fingerprint"
#: ``{output name: URI}``, as pushed under the outputs' own names: a consuming step pulls the facts alone.
OUTPUTS = "outputs"
#: The id of the step run whose results were reused, when the step was not run.
REUSED_FROM = "reused_from"
#: Browsable URLs behind the task's extra links.
OUTPUTS_URL = "outputs_url"
LOGS_URL = "logs_url"
