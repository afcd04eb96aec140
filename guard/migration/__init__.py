"""Moving a file store into a database: `guardctl migrate --to URL` (copy, then verify)."""
