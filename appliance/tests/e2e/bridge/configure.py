"""Edits mautrix-telegram's configuration (a copy of the bridge's own
example) for the bridge test, in place: this node, the bridge's loopback
port, its SQLite database, and Telegram credentials that are never used
(nobody logs in). What the bridge wrote in it (its tokens) stays.

    python configure.py CONFIG HOMESERVER DOMAIN PORT DATABASE [encrypted]

With "encrypted", end-to-bridge encryption is on in the bridge's default
mode: its bot logs in as the application service and syncs for its keys.
"""

import sys

from ruamel.yaml import YAML

path, homeserver, domain, port, database = sys.argv[1:6]
encrypted = sys.argv[6:] == ["encrypted"]
yaml = YAML()
with open(path) as f:
    config = yaml.load(f)
config["homeserver"]["address"] = homeserver
config["homeserver"]["domain"] = domain
config["appservice"]["address"] = f"http://127.0.0.1:{port}"
config["appservice"]["hostname"] = "127.0.0.1"
config["appservice"]["port"] = int(port)
config["appservice"]["database"] = f"sqlite:{database}"
config["appservice"]["provisioning"]["enabled"] = False
config["bridge"]["permissions"] = {domain: "full", f"@alice:{domain}": "admin"}
config["telegram"]["api_id"] = 1
config["telegram"]["api_hash"] = "archipel-test-never-used"
config["bridge"]["encryption"]["allow"] = encrypted
config["bridge"]["encryption"]["default"] = encrypted
config["logging"]["root"]["handlers"] = ["console"]
with open(path, "w") as f:
    yaml.dump(config, f)
