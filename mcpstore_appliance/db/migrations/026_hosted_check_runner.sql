-- Which appliance process runs a pending hosted check (catalog/pending_checks.py `Runner`): with `serve --workers
-- N`, the leader resumes the checks of a worker that died, and leaves alone those another live worker runs.
-- NULL (rows from before): no runner known, resumed like a dead one's.
ALTER TABLE hosted_checks ADD COLUMN runner TEXT;
