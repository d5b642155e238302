"""The update agent's agent.json under a failing write (stop 39 review)."""
from __future__ import annotations

import json
import subprocess
import sys

from models.zoo import ModelZoo
from sync.update_installer import ModelStore


def test_agent_json_write_that_fails_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    """Disk full while the agent saves agent.json (here the file-size limit: the same OSError path): the save
    raises, agent.json keeps its last good content, and no half-written temporary is left holding the disk space
    (before, `.agent.json.<thread>.tmp` stayed until the next start, and nothing fsynced the write either)."""
    cache = tmp_path / "cache"
    store = ModelStore(ModelZoo(cache))
    name = sorted(store.zoo.names())[0]
    store.save_model(name, note="before")
    before = (store.dir / "agent.json").read_bytes()
    script = ("import resource, signal, sys\n"
              "from pathlib import Path\n"
              "from models.zoo import ModelZoo\n"
              "from sync.update_installer import ModelStore\n"
              "store = ModelStore(ModelZoo(Path(sys.argv[1])))\n"
              "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
              "resource.setrlimit(resource.RLIMIT_FSIZE, (len(open(store.dir / 'agent.json', 'rb').read()) + 64,"
              " resource.RLIM_INFINITY))\n"
              "try:\n"
              "    store.save_model(sys.argv[2], note='x' * 65536)\n"
              "except OSError as e:\n"
              "    print('raised', e.errno)\n"
              "    sys.exit(3)\n")
    r = subprocess.run([sys.executable, "-c", script, str(cache), name], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 3 and "raised" in r.stdout, r.stdout + r.stderr
    assert (store.dir / "agent.json").read_bytes() == before
    assert json.loads(before)["models"][name]["note"] == "before"
    assert [p.name for p in store.dir.iterdir() if p.name.endswith(".tmp")] == []
