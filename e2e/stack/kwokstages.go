package stack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// kwok runs no containers, so a Job's pod cannot run its test. kwok's stages decide what
// happens to a pod instead; the stack gives kwok its own pod stages (pod-ready and pod-delete as
// the pinned kwok ships them) and these rules for Job pods, which model a verification Job whose
// container checks the value it is given (KROPIPE_VALUE, set by the promoter):
//
//   - pod annotation e2e.kropipe.io/fail-when-value: the pod fails (exit code 1) when its first
//     container's KROPIPE_VALUE equals it, with the annotation e2e.kropipe.io/failure-message as
//     the container's termination message — what a real container writes with
//     terminationMessagePolicy FallbackToLogsOnError (the end of its log);
//   - pod annotation e2e.kropipe.io/hold: the pod keeps running until the test labels it
//     e2e.kropipe.io/released=true, then completes — a verification that takes as long as the
//     test needs (to kill the promoter while it runs);
//   - any other Job pod completes at once (kwok's own pod-complete).
const (
	KwokFailWhenValue  = "e2e.kropipe.io/fail-when-value"
	KwokFailureMessage = "e2e.kropipe.io/failure-message"
	KwokHold           = "e2e.kropipe.io/hold"
	KwokReleased       = "e2e.kropipe.io/released"
)

// kwokVerifyStages are the two rules above that kwok does not ship. pod-complete is kwok's,
// with one more requirement (not held, or released).
const kwokVerifyStages = `
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: e2e-verify-fail
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values: ['Running']
    - key: '.metadata.ownerReferences.[].kind'
      operator: 'In'
      values: ['Job']
    - key: '. as $pod | (($pod.spec.containers[0].env // []) | map(select(.name == "KROPIPE_VALUE")) | .[0].value) == $pod.metadata.annotations["` + KwokFailWhenValue + `"]'
      operator: 'In'
      values: ['true']
  weight: 1
  next:
    statusTemplate: |
      {{ $now := Now }}
      {{ $annotations := or .metadata.annotations dict }}
      {{ $message := or ( index $annotations "` + KwokFailureMessage + `" ) "verification failed" }}
      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        type: ContainersReady
      containerStatuses:
      {{ range $index, $item := .spec.containers }}
      - image: {{ $item.image | Quote }}
        name: {{ $item.name | Quote }}
        ready: false
        restartCount: 0
        started: false
        state:
          terminated:
            exitCode: 1
            finishedAt: {{ $now | Quote }}
            reason: Error
            message: {{ $message | Quote }}
            startedAt: {{ $now | Quote }}
      {{ end }}
      phase: Failed
`

// heldOrReleased is the requirement added to kwok's pod-complete.
var heldOrReleased = map[string]any{
	"key":      `(.metadata.annotations["` + KwokHold + `"] == null) or (.metadata.labels["` + KwokReleased + `"] == "true")`,
	"operator": "In",
	"values":   []any{"true"},
}

// writeKwokStages writes kwok's configuration file: the pinned kwok's fast pod stages (read from
// its module, so they follow the version) with pod-complete restricted as above, and the e2e
// rules.
func (s *Stack) writeKwokStages(ctx context.Context) (string, error) {
	modDir := filepath.Join(s.e2eDir, "tools", "kwok")
	cmd := exec.CommandContext(ctx, goTool(), "mod", "download", "-json", "sigs.k8s.io/kwok")
	cmd.Dir = modDir
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("locate the kwok module (go mod download in %s): %w", modDir, err)
	}
	var m struct{ Dir string }
	if err := json.Unmarshal(out, &m); err != nil || m.Dir == "" {
		return "", fmt.Errorf("locate the kwok module: unexpected `go mod download -json` output: %s", out)
	}
	var docs [][]byte
	for _, name := range []string{"pod-ready", "pod-complete", "pod-delete"} {
		path := filepath.Join(m.Dir, "kustomize", "stage", "pod", "fast", name+".yaml")
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("kwok's default pod stages: %w", err)
		}
		if name == "pod-complete" {
			if b, err = withRequirement(b, heldOrReleased); err != nil {
				return "", fmt.Errorf("%s: %w", path, err)
			}
		}
		docs = append(docs, b)
	}
	docs = append(docs, []byte(kwokVerifyStages))
	path := filepath.Join(s.Dir, "kwok-stages.yaml")
	if err := os.WriteFile(path, bytes.Join(docs, []byte("\n---\n")), 0o644); err != nil {
		return "", err
	}
	return path, nil
}

// withRequirement adds a match expression to a kwok Stage's selector.
func withRequirement(stage []byte, req map[string]any) ([]byte, error) {
	var obj map[string]any
	if err := yaml.Unmarshal(stage, &obj); err != nil {
		return nil, err
	}
	sel, _, err := unstructured.NestedMap(obj, "spec", "selector")
	if err != nil {
		return nil, err
	}
	if sel == nil {
		sel = map[string]any{}
	}
	exprs, _ := sel["matchExpressions"].([]any)
	sel["matchExpressions"] = append(exprs, req)
	if err := unstructured.SetNestedMap(obj, sel, "spec", "selector"); err != nil {
		return nil, err
	}
	return yaml.Marshal(obj)
}
