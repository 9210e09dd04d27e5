package sdlcflow.policies.sensitive_dependencies_test

import rego.v1

import data.sdlcflow.policies.sensitive_dependencies as deps

bump(name) := [{"name": name, "ecosystem": "pypi", "from_version": "1.0", "to_version": "1.1", "manifest": "requirements.txt"}]

test_listed_package_needs_review if {
	count(deps.review) == 1 with input.dependency_changes as bump("PyJWT")
}

test_name_normalisation_matches_underscores_and_case if {
	count(deps.review) == 1 with input.dependency_changes as bump("Flask_Login")
}

test_keyword_match_needs_review if {
	count(deps.review) == 1 with input.dependency_changes as bump("my-oauth-helper")
}

test_unrelated_package_passes if {
	count(deps.review) == 0 with input.dependency_changes as bump("requests")
}

test_review_sets_risk if {
	deps.risk == 70 with input.dependency_changes as bump("cryptography")
}
