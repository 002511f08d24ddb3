pytest_plugins = ["cluster.pytest_plugin"]
