"""Code that runs inside production servers we compare against (conf/server/uvicorn.yaml), not
concurrency models of our own: a subpackage, so that the tests' model discovery (servers/*.py)
never mistakes it for one."""
