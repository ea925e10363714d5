package verify

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"
	"sigs.k8s.io/yaml"

	"github.com/kropipe/kropipe/internal/promote/freight"
)

// Labels and annotations the promoter puts on the Jobs it creates.
const (
	LabelStage   = "kropipe.io/stage"
	LabelFreight = "kropipe.io/freight"
	// LabelCommit is the promotion commit the run judges (hashed when it is no label
	// value, e.g. a SHA-256 commit); AnnCommit holds it whole. A verdict is on the freight
	// at that commit: the same freight promoted again later is a new deployment.
	LabelCommit = "kropipe.io/commit"
	AnnCommit   = "kropipe.io/commit"
	// AnnStarted is when the Job was created for the freight: the timeout runs from it,
	// across restarts and leader changes (a fake or old API server leaves
	// creationTimestamp unset or coarse).
	AnnStarted = "kropipe.io/verify-started"
	// AnnTTL keeps the manifest's ttlSecondsAfterFinished, which the promoter applies itself
	// (see cleanUp): left to Kubernetes, it would delete the verdict on the freight the stage
	// still runs, and the next pass would verify it again.
	AnnTTL = "kropipe.io/ttl-seconds-after-finished"
	// AnnValue is the tag or digest verified, which a label cannot hold: promoter verify
	// finds the runs of the value a stage runs by it.
	AnnValue = "kropipe.io/value"
)

// DefaultTimeout is how long a verification may run when kropipe.io/verify-timeout is not set.
const DefaultTimeout = 10 * time.Minute

// DefaultKeep is how many finished verification Jobs are kept per stage, for their logs.
const DefaultKeep = 3

// logTailLines bounds the failed pod's log put into the status and the Event.
const logTailLines = 20

// maxLogBytes bounds the same tail in bytes: one long line must not fill the status.
const maxLogBytes = 2000

// ErrBadManifest is wrapped when a verification manifest read from Git is not a usable Job.
var ErrBadManifest = errors.New("not a usable verification Job")

// Phase is where a verification stands.
type Phase string

const (
	Running Phase = "Running"
	Passed  Phase = "Passed"
	Failed  Phase = "Failed"
)

// Request is one verification: a stage's freight at its promotion commit.
type Request struct {
	Stage     string
	Namespace string // the Application's destination namespace
	Freight   freight.Freight
	Value     string // what the promotion wrote (tag or digest)
	Previous  string // what the stage ran before, "" when unknown
	Commit    string // the promotion commit
	Timeout   time.Duration
	// Cluster is the Application's destination cluster; nil runs in the runner's own.
	Cluster *Cluster
}

// Result is what the verification's Jobs say.
type Result struct {
	Phase Phase
	// Message says in a line what runs or what failed, e.g. "job smoke-1a2b (running 1m20s)".
	Message string
	// Log is the tail of the failed pod's log.
	Log string
	// Started is when the verification was started for the freight, zero when unknown.
	Started time.Time
}

// JobRunner creates a stage's verification Jobs and reads their outcome. It keeps no
// state: the Jobs are named by stage, freight and promotion commit, so a restarted or newly
// elected promoter adopts those already running and never creates a second one, while the
// same freight promoted again at a new commit gets new Jobs.
type JobRunner struct {
	client kubernetes.Interface
	clock  clock.PassiveClock
	keep   int
}

// JobOption configures a JobRunner.
type JobOption func(*JobRunner)

// WithClock replaces the wall clock, for timeout tests.
func WithClock(c clock.PassiveClock) JobOption { return func(r *JobRunner) { r.clock = c } }

// WithKeep sets how many finished Jobs are kept per stage (default DefaultKeep).
func WithKeep(n int) JobOption { return func(r *JobRunner) { r.keep = n } }

// NewJobRunner returns a runner creating Jobs through client.
func NewJobRunner(client kubernetes.Interface, opts ...JobOption) *JobRunner {
	r := &JobRunner{client: client, clock: clock.RealClock{}, keep: DefaultKeep}
	for _, o := range opts {
		o(r)
	}
	return r
}

// Run makes sure every Job of files (the manifests read from Git, by path) exists for the
// request's freight and returns their combined outcome: Failed as soon as one failed or
// ran out of time, Passed once all completed, else Running. An error is a problem with the
// manifests or the cluster, not a verdict on the freight.
func (r *JobRunner) Run(ctx context.Context, req Request, files map[string][]byte) (Result, error) {
	r = r.in(req.Cluster)
	jobs, err := Jobs(files)
	if err != nil {
		return Result{}, err
	}
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	var running []string
	var started time.Time
	for _, want := range jobs {
		job, err := r.ensure(ctx, req, want, timeout)
		if err != nil {
			return Result{}, err
		}
		res, err := r.outcome(ctx, job, timeout)
		if err != nil {
			return Result{}, err
		}
		if t := startedAt(job); started.IsZero() || t.Before(started) {
			started = t
		}
		res.Started = started
		switch res.Phase {
		case Failed:
			r.cleanUp(ctx, req)
			return res, nil
		case Running:
			running = append(running, res.Message)
		}
	}
	if len(running) > 0 {
		return Result{Phase: Running, Message: strings.Join(running, ", "), Started: started}, nil
	}
	r.cleanUp(ctx, req)
	names := make([]string, len(jobs))
	for i, j := range jobs {
		names[i] = "job " + JobName(req.Stage, j.Name, req.Freight.ID(), req.Commit)
	}
	return Result{Phase: Passed, Message: strings.Join(names, ", ") + " completed", Started: started}, nil
}

// Forget deletes the stage's Jobs for value in namespace of cluster (nil: the runner's
// own), so the next Run starts new ones (promoter verify). It returns how many it deleted.
func (r *JobRunner) Forget(ctx context.Context, cluster *Cluster, namespace, stage, value string) (int, error) {
	jobs := r.in(cluster).client.BatchV1().Jobs(namespace)
	list, err := jobs.List(ctx, metav1.ListOptions{LabelSelector: LabelStage + "=" + labelValue(stage)})
	if err != nil {
		return 0, fmt.Errorf("listing the verification Jobs of stage %q in %s: %w", stage, namespace, err)
	}
	background := metav1.DeletePropagationBackground
	n := 0
	for _, j := range list.Items {
		if j.Annotations[AnnValue] != value || j.DeletionTimestamp != nil {
			continue
		}
		if err := jobs.Delete(ctx, j.Name, metav1.DeleteOptions{PropagationPolicy: &background}); err != nil && !apierrors.IsNotFound(err) {
			return n, fmt.Errorf("deleting verification Job %s/%s: %w", namespace, j.Name, err)
		}
		n++
	}
	return n, nil
}

// in is the runner working in cluster: the same runner with the cluster's client, itself
// for nil.
func (r *JobRunner) in(cluster *Cluster) *JobRunner {
	if cluster == nil {
		return r
	}
	c := *r
	c.client = cluster.Kube
	return &c
}

// Jobs parses the verification manifests: every YAML document must be a batch/v1 Job whose
// pods restart Never or OnFailure. Errors name the file and the document.
func Jobs(files map[string][]byte) ([]*batchv1.Job, error) {
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var out []*batchv1.Job
	names := map[string]string{} // Job name → where it was read
	for _, p := range paths {
		rd := utilyaml.NewYAMLReader(bufioReader(files[p]))
		for doc := 1; ; doc++ {
			raw, err := rd.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("%s: document %d: %w: %w", p, doc, ErrBadManifest, err)
			}
			if len(bytes.TrimSpace(raw)) == 0 || isComments(raw) {
				continue
			}
			job, err := parseJob(raw)
			if err != nil {
				return nil, fmt.Errorf("%s: document %d: %w", p, doc, err)
			}
			where := fmt.Sprintf("%s document %d", p, doc)
			if prev, dup := names[job.Name]; dup {
				return nil, fmt.Errorf("%s: %w: the Job name %q is also used by %s; give each verification Job its own name", where, ErrBadManifest, job.Name, prev)
			}
			names[job.Name] = where
			out = append(out, job)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no Job in %s", ErrBadManifest, strings.Join(paths, ", "))
	}
	return out, nil
}

func parseJob(raw []byte) (*batchv1.Job, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(raw, &tm); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadManifest, err)
	}
	if tm.Kind != "Job" || tm.APIVersion != "batch/v1" {
		return nil, fmt.Errorf("%w: it is %s %s; write a Job (apiVersion: batch/v1, kind: Job)", ErrBadManifest, orNone(tm.APIVersion), orNone(tm.Kind))
	}
	var job batchv1.Job
	if err := yaml.UnmarshalStrict(raw, &job); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadManifest, err)
	}
	base := job.Name
	if base == "" {
		base = strings.TrimSuffix(job.GenerateName, "-")
	}
	if base == "" {
		return nil, fmt.Errorf("%w: metadata.name is missing; name the Job (the promoter adds the stage and freight)", ErrBadManifest)
	}
	job.Name = base
	switch rp := job.Spec.Template.Spec.RestartPolicy; rp {
	case corev1.RestartPolicyNever, corev1.RestartPolicyOnFailure:
	default:
		return nil, fmt.Errorf("%w: Job %s: spec.template.spec.restartPolicy is %q; write Never or OnFailure (a Job's pods cannot restart Always)", ErrBadManifest, base, orNone(string(rp)))
	}
	if len(job.Spec.Template.Spec.Containers) == 0 {
		return nil, fmt.Errorf("%w: Job %s has no containers in spec.template.spec.containers", ErrBadManifest, base)
	}
	return &job, nil
}

// JobName is the Job created for a manifest named base, in stage, for freight id promoted
// at commit: stable, so a restarted promoter finds it, and at most 63 characters (the
// job-name label of its pods must fit). The commit's first characters tell the runs of one
// freight's promotions apart; the commit annotation decides whether a Job is adopted.
func JobName(stage, base, id, commit string) string {
	suffix := id
	if c := shortCommit(commit); c != "" {
		suffix += "-" + c
	}
	name := dnsLabel(stage + "-" + base)
	if max := validation.DNS1123LabelMaxLength - len(suffix) - 1; len(name) > max {
		sum := sha256.Sum256([]byte(stage + "\x00" + base))
		name = strings.TrimRight(name[:max-7], "-") + "-" + hex.EncodeToString(sum[:])[:6]
	}
	return name + "-" + suffix
}

// shortCommit is the start of commit that names a run: 8 characters, as Git's abbreviations
// go, which tell one stage's promotions of one freight apart.
func shortCommit(commit string) string {
	c := dnsLabel(commit)
	if len(c) > 8 {
		c = strings.TrimRight(c[:8], "-")
	}
	return c
}

// ensure creates the request's Job from want, or adopts the one a previous run created.
func (r *JobRunner) ensure(ctx context.Context, req Request, want *batchv1.Job, timeout time.Duration) (*batchv1.Job, error) {
	id := req.Freight.ID()
	name := JobName(req.Stage, want.Name, id, req.Commit)
	jobs := r.client.BatchV1().Jobs(req.Namespace)
	got, err := jobs.Get(ctx, name, metav1.GetOptions{})
	if err == nil {
		return r.adopt(ctx, got, req, id)
	}
	if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("reading verification Job %s/%s: %w", req.Namespace, name, err)
	}
	job := want.DeepCopy()
	job.Name, job.GenerateName, job.Namespace, job.ResourceVersion, job.UID = name, "", req.Namespace, "", ""
	job.Labels = merge(job.Labels, runLabels(req))
	job.Annotations = merge(job.Annotations, map[string]string{AnnStarted: r.clock.Now().UTC().Format(time.RFC3339), AnnValue: req.Value, AnnCommit: req.Commit})
	if ttl := job.Spec.TTLSecondsAfterFinished; ttl != nil {
		job.Annotations[AnnTTL] = strconv.FormatInt(int64(*ttl), 10)
		job.Spec.TTLSecondsAfterFinished = nil
	}
	job.Spec.Template.Labels = merge(job.Spec.Template.Labels, runLabels(req))
	// The API server stops the Job at the deadline even while no promoter runs; the
	// runner's own check covers clusters whose Job controller does not.
	if d := int64(timeout / time.Second); d > 0 && (job.Spec.ActiveDeadlineSeconds == nil || *job.Spec.ActiveDeadlineSeconds > d) {
		job.Spec.ActiveDeadlineSeconds = &d
	}
	env := []corev1.EnvVar{
		{Name: "KROPIPE_STAGE", Value: req.Stage},
		{Name: "KROPIPE_IMAGE", Value: req.Freight.Image},
		{Name: "KROPIPE_VALUE", Value: req.Value},
		{Name: "KROPIPE_PREVIOUS", Value: req.Previous},
		{Name: "KROPIPE_COMMIT", Value: req.Commit},
	}
	pod := &job.Spec.Template.Spec
	for i := range pod.InitContainers {
		pod.InitContainers[i].Env = withEnv(pod.InitContainers[i].Env, env)
	}
	for i := range pod.Containers {
		pod.Containers[i].Env = withEnv(pod.Containers[i].Env, env)
	}
	created, err := jobs.Create(ctx, job, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		// Another replica, or our own previous attempt, won the race.
		if got, err = jobs.Get(ctx, name, metav1.GetOptions{}); err == nil {
			return r.adopt(ctx, got, req, id)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("creating verification Job %s/%s: %w", req.Namespace, name, err)
	}
	return created, nil
}

// adopt accepts an existing Job only when it was created for this stage, freight and
// promotion commit: a Job of the same name made by someone else is not a verdict on the
// freight. One of ours for another commit whose name is the same (their first characters
// agree) is deleted, and the new commit's Job made once it is gone (see outcome).
func (r *JobRunner) adopt(ctx context.Context, job *batchv1.Job, req Request, id string) (*batchv1.Job, error) {
	if job.Labels[LabelFreight] != id || job.Labels[LabelStage] != labelValue(req.Stage) {
		return nil, fmt.Errorf("verification Job %s/%s exists but was not created by kropipe for stage %q and freight %s (labels %s=%q, %s=%q); delete or rename it", job.Namespace, job.Name, req.Stage, id, LabelStage, job.Labels[LabelStage], LabelFreight, job.Labels[LabelFreight])
	}
	if job.Annotations[AnnCommit] != req.Commit && job.DeletionTimestamp == nil {
		background := metav1.DeletePropagationBackground
		if err := r.client.BatchV1().Jobs(job.Namespace).Delete(ctx, job.Name, metav1.DeleteOptions{PropagationPolicy: &background}); err != nil && !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("verification Job %s/%s judged commit %s, not %s, and could not be deleted: %w", job.Namespace, job.Name, orNone(job.Annotations[AnnCommit]), req.Commit, err)
		}
		job = job.DeepCopy()
		now := metav1.NewTime(r.clock.Now())
		job.DeletionTimestamp = &now
	}
	return job, nil
}

// runLabels are the labels of the request's Jobs, their pods and its AnalysisRun.
func runLabels(req Request) map[string]string {
	return map[string]string{LabelStage: labelValue(req.Stage), LabelFreight: req.Freight.ID(), LabelCommit: labelValue(req.Commit)}
}

// current reports whether a run with these labels and annotations judges the request: its
// freight at its promotion commit.
func current(labels, annotations map[string]string, req Request) bool {
	return labels[LabelFreight] == req.Freight.ID() && annotations[AnnCommit] == req.Commit
}

// outcome reads a Job's conditions; a failed Job's Result carries its pod's log tail.
func (r *JobRunner) outcome(ctx context.Context, job *batchv1.Job, timeout time.Duration) (Result, error) {
	if job.DeletionTimestamp != nil {
		// Deleted to verify again (promoter verify, or a Job of another commit by the same
		// name): the new Job comes once this one is gone.
		return Result{Phase: Running, Message: fmt.Sprintf("job %s (waiting for the previous run to be deleted)", job.Name)}, nil
	}
	for _, c := range job.Status.Conditions {
		if c.Status != corev1.ConditionTrue {
			continue
		}
		switch c.Type {
		case batchv1.JobComplete:
			return Result{Phase: Passed, Message: "job " + job.Name + " completed"}, nil
		case batchv1.JobFailed:
			why := strings.TrimSpace(c.Reason + ": " + c.Message)
			if c.Reason == "DeadlineExceeded" {
				why = "did not finish within " + timeout.String()
			}
			return Result{Phase: Failed, Message: fmt.Sprintf("job %s failed (%s)", job.Name, strings.Trim(why, ": ")), Log: r.logTail(ctx, job)}, nil
		}
	}
	started, err := time.Parse(time.RFC3339, job.Annotations[AnnStarted])
	if err != nil {
		started = job.CreationTimestamp.Time
	}
	ran := r.clock.Since(started)
	if !started.IsZero() && ran >= timeout {
		return Result{Phase: Failed, Message: fmt.Sprintf("job %s did not finish within %s (kropipe.io/verify-timeout)", job.Name, timeout), Log: r.logTail(ctx, job)}, nil
	}
	return Result{Phase: Running, Message: fmt.Sprintf("job %s (running %s)", job.Name, ran.Round(time.Second))}, nil
}

// logTail is what the Job's newest failed pod (else its newest pod) said: the termination
// message of a container that failed, else the end of its log. A log that cannot be read is
// said so: the verdict stands without it.
func (r *JobRunner) logTail(ctx context.Context, job *batchv1.Job) string {
	pods, err := r.client.CoreV1().Pods(job.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "job-name=" + job.Name})
	if err != nil {
		return "(the pod's log could not be read: " + err.Error() + ")"
	}
	if len(pods.Items) == 0 {
		return ""
	}
	sort.Slice(pods.Items, func(i, j int) bool {
		a, b := pods.Items[i], pods.Items[j]
		if (a.Status.Phase == corev1.PodFailed) != (b.Status.Phase == corev1.PodFailed) {
			return a.Status.Phase == corev1.PodFailed
		}
		return a.CreationTimestamp.After(b.CreationTimestamp.Time)
	})
	pod := pods.Items[0]
	// What a failed container said about its failure — its terminationMessagePath, or with
	// terminationMessagePolicy FallbackToLogsOnError the end of its log, which the kubelet
	// copies there — is in the pod's status: no connection to the kubelet needed.
	for _, cs := range append(pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses...) {
		if t := cs.State.Terminated; t != nil && t.ExitCode != 0 && strings.TrimSpace(t.Message) != "" {
			return lastBytes(strings.TrimSpace(t.Message), maxLogBytes)
		}
	}
	tail := int64(logTailLines)
	limit := int64(maxLogBytes)
	data, err := r.client.CoreV1().Pods(pod.Namespace).GetLogs(pod.Name, &corev1.PodLogOptions{TailLines: &tail, LimitBytes: &limit}).DoRaw(ctx)
	if err != nil {
		return "(the log of pod " + pod.Name + " could not be read: " + err.Error() + ")"
	}
	return strings.TrimSpace(string(data))
}

// cleanUp deletes the stage's finished Jobs beyond the newest r.keep, and those whose
// manifest's ttlSecondsAfterFinished (AnnTTL) has passed. The Jobs of the freight being
// verified, at its promotion commit, stay: they are its verdict. Failures are ignored: the next verification tries
// again.
func (r *JobRunner) cleanUp(ctx context.Context, req Request) {
	jobs := r.client.BatchV1().Jobs(req.Namespace)
	list, err := jobs.List(ctx, metav1.ListOptions{LabelSelector: LabelStage + "=" + labelValue(req.Stage)})
	if err != nil {
		return
	}
	var finished []batchv1.Job
	for _, j := range list.Items {
		if _, ok := finishedAt(&j); ok && !current(j.Labels, j.Annotations, req) {
			finished = append(finished, j)
		}
	}
	sort.Slice(finished, func(i, j int) bool { return startedAt(&finished[i]).After(startedAt(&finished[j])) })
	background := metav1.DeletePropagationBackground
	now := r.clock.Now()
	for i, j := range finished {
		expired := false
		if ttl, err := strconv.ParseInt(j.Annotations[AnnTTL], 10, 32); err == nil {
			at, _ := finishedAt(&j)
			expired = !now.Before(at.Add(time.Duration(ttl) * time.Second))
		}
		// The freight being verified counts as one of the r.keep.
		if i >= r.keep-1 || expired {
			_ = jobs.Delete(ctx, j.Name, metav1.DeleteOptions{PropagationPolicy: &background})
		}
	}
}

// finishedAt is when the Job completed or failed; ok is false while it runs.
func finishedAt(j *batchv1.Job) (time.Time, bool) {
	for _, c := range j.Status.Conditions {
		if c.Status == corev1.ConditionTrue && (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) {
			if c.LastTransitionTime.IsZero() {
				return startedAt(j), true
			}
			return c.LastTransitionTime.Time, true
		}
	}
	return time.Time{}, false
}

func startedAt(j *batchv1.Job) time.Time {
	if t, err := time.Parse(time.RFC3339, j.Annotations[AnnStarted]); err == nil {
		return t
	}
	return j.CreationTimestamp.Time
}

// withEnv sets vars on env, replacing those of the same name.
func withEnv(env, vars []corev1.EnvVar) []corev1.EnvVar {
	out := make([]corev1.EnvVar, 0, len(env)+len(vars))
	for _, e := range env {
		if !strings.HasPrefix(e.Name, "KROPIPE_") {
			out = append(out, e)
		}
	}
	return append(out, vars...)
}

func merge(m, add map[string]string) map[string]string {
	out := make(map[string]string, len(m)+len(add))
	for k, v := range m {
		out[k] = v
	}
	for k, v := range add {
		out[k] = v
	}
	return out
}

// labelValue is the stage as a label value: itself when valid, else a hash of it.
func labelValue(s string) string {
	if len(validation.IsValidLabelValue(s)) == 0 {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "h-" + hex.EncodeToString(sum[:])[:20]
}

// dnsLabel lowercases s and replaces what a DNS label cannot hold with '-'.
func dnsLabel(s string) string {
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			b[i] = '-'
		}
	}
	return strings.Trim(string(b), "-")
}

func isComments(raw []byte) bool {
	for _, line := range strings.Split(string(raw), "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") && l != "---" {
			return false
		}
	}
	return true
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// lastBytes keeps the end of s, at most n bytes, on a rune boundary.
func lastBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := len(s) - n
	for i < len(s) && !utf8.RuneStart(s[i]) {
		i++
	}
	return "…" + s[i:]
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }
