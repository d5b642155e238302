"""Step scripts. Each runs as `python -m`-less script inside one build venv: `python steps/X.py --args`.

They import nothing from this project (the build venvs do not have it installed) except `_util.py` beside them.
"""
