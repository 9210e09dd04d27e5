package sdlcflow.policies.auth_paths_test

import rego.v1

import data.sdlcflow.policies.auth_paths

files(paths) := [{"path": p, "status": "modified", "previous_path": null} | some p in paths]

test_nested_auth_directory_needs_two_approvals if {
	count(auth_paths.review) == 1 with input.files_changed as files(["src/auth/tokens.py"])
	auth_paths.required_approvals == 2 with input.files_changed as files(["src/auth/tokens.py"])
}

test_login_module_at_root_needs_review if {
	count(auth_paths.review) == 1 with input.files_changed as files(["login.py"])
}

test_file_renamed_out_of_auth_needs_review if {
	count(auth_paths.review) == 1 with input.files_changed as [{"path": "src/util.py", "status": "renamed", "previous_path": "src/auth/util.py"}]
}

test_unrelated_paths_need_nothing if {
	count(auth_paths.review) == 0 with input.files_changed as files(["README.md", "src/shop/cart.py"])
	not auth_paths.required_approvals with input.files_changed as files(["README.md"])
}
