# Dependency bumps of security-sensitive packages (auth, crypto, jwt, oauth, sessions) need a
# human to read the changelog: a "minor" bump of an auth library broke login in the incident.
package sdlcflow.policies.sensitive_dependencies

import rego.v1

normalized(name) := lower(regex.replace(name, "[-_.]+", "-"))

sensitive(name) if {
	some listed in data.settings.sensitive_packages
	normalized(listed) == normalized(name)
}

sensitive(name) if {
	some keyword in data.settings.sensitive_keywords
	contains(normalized(name), keyword)
}

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
