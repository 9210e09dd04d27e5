package sdlcflow.policies.env_vars_test

import rego.v1

import data.sdlcflow.policies.env_vars

# rego-cpp 1.5 cannot use a rule as the value of `with`; functions work, so fixtures are functions.
change(name, kind, new_name) := [{"name": name, "change": kind, "new_name": new_name, "path": ".env"}]

test_renamed_var_still_read_is_denied if {
	count(env_vars.deny) == 1 with input.env_var_changes as change("AUTH_SECRET", "renamed", "JWT_SECRET")
		with input.env_var_references as [{"name": "AUTH_SECRET", "path": "src/app.py", "line": 12}]
}

test_removed_var_still_read_is_denied if {
	count(env_vars.deny) == 1 with input.env_var_changes as change("LEGACY_URL", "removed", null)
		with input.env_var_references as [{"name": "LEGACY_URL", "path": "deploy/values.yaml", "line": 3}]
}

test_renamed_var_read_only_under_new_name_passes if {
	count(env_vars.deny) == 0 with input.env_var_changes as change("AUTH_SECRET", "renamed", "JWT_SECRET")
		with input.env_var_references as [{"name": "JWT_SECRET", "path": "src/app.py", "line": 12}]
}

test_added_var_is_fine if {
	count(env_vars.deny) == 0 with input.env_var_changes as [{"name": "NEW", "change": "added", "new_name": null, "path": ""}]
		with input.env_var_references as [{"name": "NEW", "path": "src/app.py", "line": 1}]
}
