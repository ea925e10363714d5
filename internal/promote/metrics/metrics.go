// Package metrics counts what the promoter does — promotions by stage and result, registry
// requests, Git push retries, promotion durations — and serves them to Prometheus.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kropipe/kropipe/internal/promote/gitwrite"
	"github.com/kropipe/kropipe/internal/promote/stage"
)

// Results a promotion is counted under.
const (
	ResultPromoted   = "promoted"
	ResultRolledBack = "rolled-back"
	ResultFailed     = "failed"
)

// Metrics holds the promoter's collectors on a private registry, so nothing a library
// registers on prometheus.DefaultRegisterer leaks into /metrics.
type Metrics struct {
	reg              *prometheus.Registry
	promotions       *prometheus.CounterVec
	registryRequests *prometheus.CounterVec
	pushRetries      *prometheus.CounterVec
	duration         *prometheus.HistogramVec
	notifications    *prometheus.CounterVec
	invalidTags      *prometheus.CounterVec
	signatureChecks  *prometheus.CounterVec
}

// New returns the promoter's metrics, with Go runtime and process collectors next to them.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		promotions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kropipe_promotions_total",
			Help: "Promotions and rollbacks written to Git, and failed attempts, by stage and result (promoted, rolled-back, failed).",
		}, []string{"stage", "result"}),
		registryRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kropipe_registry_requests_total",
			Help: "HTTP requests to image registries by registry host and status code (0: no response).",
		}, []string{"registry", "code"}),
		pushRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kropipe_git_push_retries_total",
			Help: "Git pushes refused because the branch moved and re-applied on the new head, by repository.",
		}, []string{"repo"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "kropipe_promotion_duration_seconds",
			Help: "Time from the start of the pass (or API call) that wrote a promotion or rollback until it was pushed, by stage.",
			// A pass is a fetch, a registry query and a push: seconds normally, minutes when a
			// registry rate-limits or the push is retried.
			Buckets: []float64{0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"stage"}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kropipe_registry_notifications_total",
			Help: "Registry push notifications received, by result (due, ignored, refused, invalid, unavailable, error).",
		}, []string{"result"}),
		invalidTags: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kropipe_registry_invalid_tags_total",
			Help: "Listed tags skipped because they are not valid tag names, by image; each tag counts once per process.",
		}, []string{"image"}),
		signatureChecks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kropipe_signature_checks_total",
			Help: "Image digests checked against a stage's signature policies, by result (verified, unverified, error: the registry failed and the stage holds); answers from the verifiers' cache count too.",
		}, []string{"result"}),
	}
	for _, r := range []string{stage.SignatureVerified, stage.SignatureUnverified, stage.SignatureError} {
		m.signatureChecks.WithLabelValues(r) // every result shows, at 0, before the first check
	}
	m.reg.MustRegister(m.promotions, m.registryRequests, m.pushRetries, m.duration, m.notifications, m.invalidTags, m.signatureChecks,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Registry is the private registry, for tests and for adding collectors.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the metrics in the Prometheus exposition format; mount it at /metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// RegistryRequest counts one registry response; pass it to warehouse.WithMetrics.
func (m *Metrics) RegistryRequest(registry string, code int) {
	m.registryRequests.WithLabelValues(registry, strconv.Itoa(code)).Inc()
}

// InvalidTag counts one listed tag that is not a valid tag name; pass it to
// warehouse.WithInvalidTags.
func (m *Metrics) InvalidTag(image, _ string) { m.invalidTags.WithLabelValues(image).Inc() }

// Notification counts one registry notification by what became of it; pass it to
// webhook.WithResults.
func (m *Metrics) Notification(result string) { m.notifications.WithLabelValues(result).Inc() }

// SignatureCheck counts one signature check by its result (stage.SignatureVerified,
// SignatureUnverified, SignatureError); pass it to stage.WithSignatureChecks.
func (m *Metrics) SignatureCheck(result string) { m.signatureChecks.WithLabelValues(result).Inc() }

// PushRetry counts one push re-applied because the branch moved; pass it to
// gitwrite.WithPushRetries.
func (m *Metrics) PushRetry(repo string) { m.pushRetries.WithLabelValues(repo).Inc() }

// Promotion counts one promotion (result promoted or rolled-back, with the time it took) or
// one failure (duration ignored).
func (m *Metrics) Promotion(stageName, result string, took time.Duration) {
	m.promotions.WithLabelValues(stageName, result).Inc()
	if result != ResultFailed {
		m.duration.WithLabelValues(stageName).Observe(took.Seconds())
	}
}

// Pass counts what one engine pass did, by comparing each stage's status before and after
// it: a new LastCommit is a promotion (or rollback) that took the pass's time, a stage that
// newly failed — or failed with a different error — is a failure. Statuses repeated by a quiet
// pass count nothing, so calling Pass after every Reconcile counts each event once.
func (m *Metrics) Pass(before, after []stage.Status, took time.Duration) {
	prev := make(map[string]stage.Status, len(before))
	for _, s := range before {
		prev[s.Name] = s
	}
	for _, s := range after {
		p := prev[s.Name]
		// Decision promote tells a commit this pass wrote from one it only read from Git
		// history (the first pass) or one an API call wrote before the pass.
		if s.LastCommit != "" && s.LastCommit != p.LastCommit && s.Decision == stage.DecisionPromote {
			m.Promotion(s.Name, ResultPromoted, took)
		}
		if s.Failed() && (!p.Failed() || p.Error != s.Error) {
			m.Promotion(s.Name, ResultFailed, 0)
		}
	}
}

// Outcome counts a promotion or rollback made through the API from what Engine.Promote or
// Engine.Rollback returned.
func (m *Metrics) Outcome(o stage.Outcome, err error, took time.Duration) {
	// A commit can land and its verification still fail: that counts as both.
	switch {
	case o.Commit == "" || o.Skipped:
		// Nothing was written: refused, or the file already held the value.
	case o.Kind == gitwrite.Rollback.String():
		m.Promotion(o.Stage, ResultRolledBack, took)
	default:
		m.Promotion(o.Stage, ResultPromoted, took)
	}
	if err != nil {
		m.Promotion(o.Stage, ResultFailed, 0)
	}
}
