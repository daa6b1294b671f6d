"""XCom keys a step task pushes besides one per output (whose value is the output's ``azureml://`` URI).

They all contain a '.', which an output name cannot, so they never collide with an output.
"""

#: The step run's fingerprint (a consumer's input identity is its producer's fingerprint).
FINGERPRINT = "aml.fingerprint"
#: ``azureml://`` URI of the step run's record (metrics, tags, files, driver log).
STEP_RUN = "aml.step_run"
#: The id of the step run whose results were reused, when the step was not run.
REUSED_FROM = "aml.reused_from"
#: Browsable URLs behind the task's extra links.
OUTPUTS_URL = "aml.outputs_url"
LOGS_URL = "aml.logs_url"
