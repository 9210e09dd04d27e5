# Database migrations need a human review, and a declared rollback: a migration nobody can undo
# turns a bad deploy into an outage.
package sdlcflow.policies.migrations

import rego.v1

review contains {
	"rule": "migration_needs_review",
	"msg": sprintf("database migration %s (%s) needs review", [m.id, m.path]),
	"paths": ["input.migrations"],
} if {
	some m in input.migrations
}

deny contains {
	"rule": "migration_without_rollback",
	"msg": sprintf("database migration %s (%s) declares no rollback; add one and set has_rollback", [m.id, m.path]),
	"paths": ["input.migrations"],
} if {
	some m in input.migrations
	not m.has_rollback
}

risk := 85 if {
	some m in input.migrations
	m.destructive
}

risk := 60 if {
	count(input.migrations) > 0
	not any_destructive
}

any_destructive if {
	some m in input.migrations
	m.destructive
}
