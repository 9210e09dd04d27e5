# Changes that touch authentication or authorization code need two approvals.
package sdlcflow.policies.auth_paths

import rego.v1

auth_path(path) if {
	some pattern in data.settings.auth_path_globs
	glob.match(pattern, ["/"], path)
}

touched contains f.path if {
	some f in input.files_changed
	auth_path(f.path)
}

touched contains f.previous_path if {
	some f in input.files_changed
	f.previous_path != null
	auth_path(f.previous_path)
}

review contains {
	"rule": "auth_path_changed",
	"msg": sprintf("auth-sensitive path changed: %s; needs %d approvals", [path, data.settings.auth_required_approvals]),
	"paths": ["input.files_changed"],
} if {
	some path in touched
}

required_approvals := data.settings.auth_required_approvals if count(touched) > 0

risk := 75 if count(touched) > 0
