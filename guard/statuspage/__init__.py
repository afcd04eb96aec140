"""The status page: `guardctl status` in the browser, served by the guard's app inside MLflow's
server at /guard/ (and /guard/status.json), plus the journal of the requests the guard refused.

One static HTML page with its CSS and JS (package data: no build step, no CDN, the machines may
be offline) polls status.json, the same report `guardctl status --json` prints, and renders it
with textContent only: names arrive by sync from other machines and are untrusted.
"""
