"""Model build chain: isolated build venvs, step scripts, the content-addressed chain and signing."""
