package sdlcflow.policies.tests_on_head_test

import rego.v1

import data.sdlcflow.policies.tests_on_head

run(status, sha) := [{"suite": "unit", "status": status, "sha": sha, "required": true, "url": ""}]

test_green_tests_on_head_pass if {
	count(tests_on_head.deny) == 0 with input.head_sha as "abc" with input.test_results as run("passed", "abc")
}

test_green_tests_on_another_sha_are_denied if {
	count(tests_on_head.deny) == 1 with input.head_sha as "abc" with input.test_results as run("passed", "old")
}

test_failed_tests_are_denied if {
	count(tests_on_head.deny) == 1 with input.head_sha as "abc" with input.test_results as run("failed", "abc")
}

test_no_tests_are_denied if {
	count(tests_on_head.deny) == 1 with input.head_sha as "abc" with input.test_results as []
}

test_optional_suite_does_not_count if {
	count(tests_on_head.deny) == 1 with input.head_sha as "abc"
		with input.test_results as [{"suite": "perf", "status": "failed", "sha": "abc", "required": false, "url": ""}]
}
