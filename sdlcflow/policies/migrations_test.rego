package sdlcflow.policies.migrations_test

import rego.v1

import data.sdlcflow.policies.migrations

# rego-cpp 1.5 cannot use a rule as the value of `with`; functions work, so fixtures are functions.
migration(rollback, destructive) := [{"id": "0042", "path": "db/0042.sql", "has_rollback": rollback, "rollback_path": null, "destructive": destructive}]

test_migration_with_rollback_needs_review_only if {
	count(migrations.review) == 1 with input.migrations as migration(true, false)
	count(migrations.deny) == 0 with input.migrations as migration(true, false)
}

test_migration_without_rollback_is_denied if {
	count(migrations.deny) == 1 with input.migrations as migration(false, true)
}

test_destructive_migration_is_high_risk if {
	migrations.risk == 85 with input.migrations as migration(false, true)
}

test_no_migration_no_findings if {
	count(migrations.review) == 0 with input.migrations as []
}
