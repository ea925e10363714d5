package stack

import (
	"fmt"
	"strings"

	"github.com/argoproj/argo-cd/v2/pkg/apis/application/v1alpha1"
)

// DescribeApplication says what a test failing on an Application needs to know: sync status
// and revision, health, the pending and the last operation (who started it, phase, message),
// conditions and the resources' states.
func DescribeApplication(a *v1alpha1.Application) string {
	if a == nil {
		return "(never read)"
	}
	s := a.Status
	var b strings.Builder
	fmt.Fprintf(&b, "sync=%s@%.8s health=%s", s.Sync.Status, s.Sync.Revision, s.Health.Status)
	if a.Operation != nil {
		fmt.Fprintf(&b, "; pending operation by %q", a.Operation.InitiatedBy.Username)
	}
	if op := s.OperationState; op != nil {
		fmt.Fprintf(&b, "; last operation by %q started %s: %s %s", op.Operation.InitiatedBy.Username, op.StartedAt, op.Phase, op.Message)
	}
	for _, c := range s.Conditions {
		fmt.Fprintf(&b, "\n  condition %s: %s", c.Type, c.Message)
	}
	for _, r := range s.Resources {
		h := ""
		if r.Health != nil {
			h = string(r.Health.Status) + " " + r.Health.Message
		}
		fmt.Fprintf(&b, "\n  resource %s/%s %s: %s %s", r.Kind, r.Namespace, r.Name, r.Status, h)
	}
	return b.String()
}
