"""`python -m pipeline.launch [options]` runs `mosaic-it run [options]`.

The entry point for launchers that start a Python file or module with pipeline options only:
Dataflow Flex Templates (FLEX_TEMPLATE_PYTHON_PY_FILE, see deploy/Dockerfile) and Airflow's
BeamRunPythonPipelineOperator (py_file="pipeline.launch", py_options=["-m"]).
"""

import sys

from pipeline.cli import main

if __name__ == "__main__":
    sys.exit(main(["run", *sys.argv[1:]]))
