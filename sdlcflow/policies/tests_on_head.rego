# Nothing promotes without green tests on the exact head SHA: in the incident tests passed on
# one version and a different one was shipped.
package sdlcflow.policies.tests_on_head

import rego.v1

required_runs contains t if {
	some t in input.test_results
	object.get(t, "required", true)
}

deny contains {
	"rule": "no_test_results",
	"msg": sprintf("no required test results for head %s; run the tests on it", [input.head_sha]),
	"paths": ["input.test_results", "input.head_sha"],
} if {
	count(required_runs) == 0
}

deny contains {
	"rule": "tests_on_other_sha",
	"msg": sprintf("test suite %s ran on %s, not on head %s; rerun it on the head", [t.suite, t.sha, input.head_sha]),
	"paths": ["input.test_results", "input.head_sha"],
} if {
	some t in required_runs
	t.sha != input.head_sha
}

deny contains {
	"rule": "tests_not_green",
	"msg": sprintf("test suite %s is %s on %s", [t.suite, t.status, t.sha]),
	"paths": ["input.test_results"],
} if {
	some t in required_runs
	not t.status in data.settings.passing_test_statuses
}
