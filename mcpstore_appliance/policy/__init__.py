"""Group policy of organizations: what members and managed devices may install and run.

- model.py     the Policy value (pydantic) an org admin edits
- ranges.py    npm-style version ranges of allow rules
- decide.py    decide(policy, package, version, facts) -> Allowed | Refused(rule, reason)
- service.py   versions in SQLite (each change a row, audited), device tokens, decisions for members
- signed.py    the Ed25519-signed canonical JSON devices fetch
- render_*.py  the same policy for MDM: macOS .mobileconfig, Windows .reg and ADMX/ADML, VS Code / Copilot
"""
