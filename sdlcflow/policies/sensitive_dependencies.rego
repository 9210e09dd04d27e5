# Dependency bumps of security-sensitive packages (auth, crypto, jwt, oauth, sessions) need a
# human to read the changelog: a "minor" bump of an auth library broke login in the incident.
package sdlcflow.policies.sensitive_dependencies

import rego.v1

# Plain string built-ins: cheaper than regex.replace, which compiles its pattern per call.
normalized(name) := replace(replace(lower(name), "_", "-"), ".", "-")

# Computed once per evaluation, not once per dependency.
sensitive_names := {normalized(listed) | some listed in data.settings.sensitive_packages}

sensitive(name) if normalized(name) in sensitive_names

keyword_pattern := concat("|", data.settings.sensitive_keywords)

sensitive(name) if regex.match(keyword_pattern, normalized(name))

describe(dep) := sprintf("%s %s -> %s", [dep.name, version(dep.from_version), version(dep.to_version)])

version(v) := "(none)" if v == null

version(v) := v if v != null

review contains {
	"rule": "sensitive_dependency_changed",
	"msg": sprintf("security-sensitive dependency changed: %s (%s); read its changelog", [describe(dep), dep.manifest]),
	"paths": ["input.dependency_changes"],
} if {
	some dep in input.dependency_changes
	sensitive(dep.name)
}

risk := 70 if count(review) > 0
