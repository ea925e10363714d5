package argocd

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"
)

// Event reasons, as `kubectl describe application` and `kubectl get events` show them.
const (
	ReasonPromoted        = "Promoted"
	ReasonRolledBack      = "RolledBack"
	ReasonPromotionFailed = "PromotionFailed"
	ReasonMisconfigured   = "InvalidConfiguration"
)

// maxEventMessage is the API server's limit on an Event's message.
const maxEventMessage = 1024

// Recorder writes Kubernetes Events (core/v1) on Applications, so what kropipe did
// shows next to what Argo CD did.
type Recorder struct {
	client    kubernetes.Interface
	component string
	instance  string
	clock     clock.PassiveClock
	seq       atomic.Uint64
}

// RecorderOption configures a Recorder.
type RecorderOption func(*Recorder)

// WithComponent sets the Event source (default kropipe-promoter).
func WithComponent(name string) RecorderOption { return func(r *Recorder) { r.component = name } }

// WithRecorderClock replaces the wall clock.
func WithRecorderClock(c clock.PassiveClock) RecorderOption { return func(r *Recorder) { r.clock = c } }

// NewRecorder returns a Recorder creating Events through client. The reporting
// instance is the host name: the pod name, which tells two replicas apart.
func NewRecorder(client kubernetes.Interface, opts ...RecorderOption) *Recorder {
	host, _ := os.Hostname()
	r := &Recorder{client: client, component: "kropipe-promoter", instance: host, clock: clock.RealClock{}}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Promoted records a promotion; message is the commit subject.
func (r *Recorder) Promoted(ctx context.Context, app AppRef, message string) error {
	return r.Event(ctx, app, corev1.EventTypeNormal, ReasonPromoted, message)
}

// RolledBack records a rollback; message is the commit subject.
func (r *Recorder) RolledBack(ctx context.Context, app AppRef, message string) error {
	return r.Event(ctx, app, corev1.EventTypeNormal, ReasonRolledBack, message)
}

// Failed records a failed promotion; message is the error.
func (r *Recorder) Failed(ctx context.Context, app AppRef, message string) error {
	return r.Event(ctx, app, corev1.EventTypeWarning, ReasonPromotionFailed, message)
}

// Misconfigured records a Problem that blocks the Application's stage.
func (r *Recorder) Misconfigured(ctx context.Context, app AppRef, message string) error {
	return r.Event(ctx, app, corev1.EventTypeWarning, ReasonMisconfigured, message)
}

// Event creates one Event on app.
func (r *Recorder) Event(ctx context.Context, app AppRef, eventType, reason, message string) error {
	now := r.clock.Now()
	if len(message) > maxEventMessage {
		message = message[:maxEventMessage-3] + "..."
	}
	t := metav1.NewTime(now)
	ev := &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{
			// Unique without generateName, which fake clients do not fill in.
			Name:      fmt.Sprintf("%s.%x%02x", app.Name, now.UnixNano(), r.seq.Add(1)%256),
			Namespace: app.Namespace,
		},
		InvolvedObject: corev1.ObjectReference{
			APIVersion: "argoproj.io/v1alpha1", Kind: "Application",
			Namespace: app.Namespace, Name: app.Name, UID: app.UID,
		},
		Reason: reason, Message: message, Type: eventType,
		Source:         corev1.EventSource{Component: r.component},
		FirstTimestamp: t, LastTimestamp: t, Count: 1,
		ReportingController: "kropipe.io/promoter", ReportingInstance: r.instance,
		Action: reason,
	}
	if _, err := r.client.CoreV1().Events(app.Namespace).Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("recording event %s on Application %s: %w", reason, app, err)
	}
	return nil
}
