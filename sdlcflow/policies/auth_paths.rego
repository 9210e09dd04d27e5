# Changes that touch authentication or authorization code need two approvals.
package sdlcflow.policies.auth_paths

import rego.v1

# A path is auth-sensitive when it contains an auth keyword, or matches an optional extra glob.
# One regex alternation per path: in rego-cpp that is ~10x faster than looping over keywords
# with contains(), and glob.match per pattern is slower still (benchmarks/policy_bench.py).
keyword_pattern := concat("|", data.settings.auth_path_keywords)

auth_path(path) if regex.match(keyword_pattern, lower(path))

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
