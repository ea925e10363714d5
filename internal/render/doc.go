// Package render turns Kro instances into the Kubernetes objects kro's controller would create,
// offline. A ResourceGraphDefinition is compiled once with kro's own graph builder into a
// Definition; each instance is then admitted (defaults, validation) and evaluated with kro's
// runtime, treating every rendered dependency as observed in its desired state.
package render
