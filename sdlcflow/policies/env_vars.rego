# A renamed or removed environment variable that code or config still reads fails the change:
# in the incident one agent renamed a variable while another change still read the old name.
package sdlcflow.policies.env_vars

import rego.v1

gone(change) if change.change in {"renamed", "removed"}

what(change) := sprintf("renamed to %s", [change.new_name]) if change.change == "renamed"

what(change) := "removed" if change.change == "removed"

deny contains {
	"rule": "env_var_still_referenced",
	"msg": sprintf("%s was %s but %s:%d still reads %s", [change.name, what(change), ref.path, ref.line, change.name]),
	"paths": ["input.env_var_changes", "input.env_var_references"],
} if {
	some change in input.env_var_changes
	gone(change)
	some ref in input.env_var_references
	ref.name == change.name
}

risk := 95 if count(deny) > 0
