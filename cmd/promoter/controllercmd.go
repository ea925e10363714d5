package main

import (
	"cmp"
	"errors"
	"log/slog"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/kropipe/kropipe/internal/promote/argocd"
	"github.com/kropipe/kropipe/internal/promote/controller"
	"github.com/kropipe/kropipe/internal/promote/kubestate"
	"github.com/kropipe/kropipe/internal/promote/leader"
)

// controllerFlags are `promoter controller`'s own flags; --addr, --data-dir, --token-file and
// --log-level are the root command's.
type controllerFlags struct {
	kubeconfig         string
	namespace          string
	argocdNamespace    string
	watchNamespaces    []string
	pullSecrets        []string
	insecureRegistries []string
	interval           time.Duration
	healthTimeout      time.Duration
	webhook            webhookFlags
	limits             passFlags
	leaderElect        bool
	stateConfigMap     string
	healthAddr         string
	shards             int
	leaseDuration      time.Duration
	renewDeadline      time.Duration
	retryPeriod        time.Duration
	peerAddr           string
	peerSecret         string
	owedBackoff        time.Duration
	signing            signingFlags
	signaturePolicies  string
}

func newControllerCommand(g *globals) *cobra.Command {
	f := &controllerFlags{}
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Run in the cluster: stages from Argo CD annotations, one leader, state in a ConfigMap",
		Long: "controller reads the stages from kropipe.io/* annotations on Argo CD Applications and\n" +
			"ApplicationSets in --watch-namespaces, promotes new tags by committing them to Git, and keeps\n" +
			"approvals, verifications and pauses in ConfigMaps named after --state-configmap, each stage's\n" +
			"in the one its name hashes to, whatever runs it. With --leader-elect\n" +
			"(the default) replicas campaign for a Lease and only the leader promotes; every replica serves\n" +
			"the API on --addr (loopback: use kubectl port-forward) and probes and metrics on --health-addr.\n" +
			"--leader-elect=false starts promoting at once, without waiting for a Lease: for a single\n" +
			"replica only (two replicas without it would both write to Git). With --shards N (N > 1) the\n" +
			"stages are spread over the replicas: each pipeline belongs to one of N shards, every shard has\n" +
			"a Lease held by one replica at a time, and\n" +
			"any replica answers for every stage, passing actions on to the owner over --peer-addr.\n" +
			"Logs are JSON on stderr.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := g.jsonLogger()
			// client-go logs (leader election, informers) through klog: send them to the same
			// JSON stream.
			klog.SetSlogLogger(log)
			kube, dyn, leases, ns, err := controller.Connect(f.kubeconfig)
			if err != nil {
				return err
			}
			if f.namespace == "" {
				f.namespace = cmp.Or(g.getenv("POD_NAMESPACE"), ns)
			}
			cfg, err := f.config(g, kube, dyn, log)
			cfg.Leases = leases
			if err != nil {
				return err
			}
			return controller.Run(cmd.Context(), cfg)
		},
	}
	f.register(cmd.Flags())
	return cmd
}

func (f *controllerFlags) register(fl *pflag.FlagSet) {
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, else the in-cluster service account)")
	fl.StringVar(&f.namespace, "namespace", "", "the promoter's namespace: its Lease, state ConfigMap and pull secrets (default $POD_NAMESPACE, else the kubeconfig's or the pod's namespace)")
	fl.StringVar(&f.argocdNamespace, "argocd-namespace", "argocd", "Argo CD's own namespace: its repository Secrets give the Git credentials")
	fl.StringSliceVar(&f.watchNamespaces, "watch-namespaces", []string{"argocd"}, "namespaces whose Argo CD Applications and ApplicationSets to read (comma-separated)")
	fl.StringSliceVar(&f.pullSecrets, "pull-secrets", nil, "names of kubernetes.io/dockerconfigjson Secrets in --namespace holding registry credentials (comma-separated)")
	fl.StringSliceVar(&f.insecureRegistries, "insecure-registry", nil, "registry hosts (host:port) reached over plain HTTP, e.g. an in-cluster registry (repeatable)")
	fl.DurationVar(&f.interval, "interval", 5*time.Minute, "longest time between passes; a stage's kropipe.io/interval may shorten it; 0 with --webhook-addr: no polling, passes on notifications, Application changes, actions and soak ends only")
	fl.DurationVar(&f.healthTimeout, "health-timeout", argocd.DefaultGateTimeout, "how long a promoted Application may stay Degraded or its sync failed before the promotion fails (and, with kropipe.io/auto-rollback, is rolled back)")
	fl.BoolVar(&f.leaderElect, "leader-elect", true, "campaign for the Lease "+leader.DefaultName+" so only one replica promotes; false promotes at once without a Lease, safe only with a single replica")
	fl.StringVar(&f.stateConfigMap, "state-configmap", kubestate.DefaultName, "name of the ConfigMaps in --namespace keeping approvals, verifications and pauses: each stage's in <name>-stages-<0..63> by its name (an upgrade reads <name> and <name>-<shard> once)")
	fl.IntVar(&f.shards, "shards", 1, "spread the stages over the replicas in this many shards, each fenced by its own Lease; every replica must be given the same number; 1 is one leader doing all the work")
	fl.DurationVar(&f.leaseDuration, "lease-duration", leader.DefaultLeaseDuration, "how long a Lease (the leader's, or a shard's) holds without renewal, in whole seconds (a Lease stores seconds): a dead replica's work is taken over after it, counted from when the others saw its last renewal")
	fl.DurationVar(&f.renewDeadline, "renew-deadline", leader.DefaultRenewDeadline, "a replica that could not renew its Lease for this long stops its work; shorter than --lease-duration")
	fl.DurationVar(&f.retryPeriod, "retry-period", leader.DefaultRetryPeriod, "how often Leases are renewed and tried for; shorter than --renew-deadline")
	fl.StringVar(&f.peerAddr, "peer-addr", "", "with --shards: where the other replicas reach this one's API (e.g. :8083, advertised with $POD_IP); every request there needs the replicas' credential (--peer-secret, else --token-file). Default: --addr")
	fl.StringVar(&f.peerSecret, "peer-secret", "", "with --peer-addr: the Secret in --namespace whose \"token\" the replicas authenticate to each other with; an empty one is filled with a random token by the first replica (manifests/promoter ships kropipe-promoter-peer). Default: the API token of --token-file")
	f.webhook.register(fl)
	fl.DurationVar(&f.owedBackoff, "owed-backoff", controller.OwedBackoff.Duration, "after an automatic rollback's failed attempt (Git refused the push), how long until it is tried again; doubles on every failure up to 5m, and it is tried for as long as it is owed")
	fl.StringVar(&f.healthAddr, "health-addr", "", "where to serve /healthz, /readyz and /metrics only, e.g. :8081 for kubelet probes and Prometheus (default: off)")
	f.limits.register(fl)
	f.signing.register(fl)
	fl.StringVar(&f.signaturePolicies, "signature-policies", "", signaturePoliciesHelp)
}

// jsonLogger is the controller's logger: structured JSON for the cluster's log pipeline.
func (g *globals) jsonLogger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(g.stderr, &slog.HandlerOptions{Level: g.level()}))
}

// config checks the flags, naming them in its errors, and makes the replica's configuration.
func (f *controllerFlags) config(g *globals, kube kubernetes.Interface, dyn dynamic.Interface, log *slog.Logger) (controller.Config, error) {
	none := controller.Config{}
	if err := f.limits.check(); err != nil {
		return none, err
	}
	if f.owedBackoff <= 0 {
		return none, errors.New("--owed-backoff must be positive, e.g. 10s: an automatic rollback Git refused is tried again after it")
	}
	tok, loopback, err := g.apiAuth("other pods", "give --token-file (mount it from a Secret) so only holders of the token can promote, or keep 127.0.0.1 and use kubectl port-forward")
	if err != nil {
		return none, err
	}
	secret, err := f.webhook.readSecret(g)
	if err != nil {
		return none, err
	}
	dir, err := g.stateDir()
	if err != nil {
		return none, err
	}
	signer, err := f.signing.load(g)
	if err != nil {
		return none, err
	}
	policies, err := loadSignaturePolicies(f.signaturePolicies)
	if err != nil {
		return none, err
	}
	cfg := controller.Config{
		Kube: kube, Dynamic: dyn, Logger: log,
		Namespace: f.namespace, ArgoCDNamespace: f.argocdNamespace, WatchNamespaces: f.watchNamespaces,
		PullSecrets: f.pullSecrets, InsecureRegistries: f.insecureRegistries,
		Interval: f.interval, HealthTimeout: f.healthTimeout,
		LeaderElect: f.leaderElect, StateConfigMap: f.stateConfigMap, DataDir: dir,
		Addr: g.addr, Token: tok, RequireToken: !loopback, HealthAddr: f.healthAddr,
		WebhookAddr: f.webhook.addr, WebhookSecret: secret, PodIP: g.getenv("POD_IP"),
		Shards: f.shards, LeaseDuration: f.leaseDuration, RenewDeadline: f.renewDeadline, RetryPeriod: f.retryPeriod, PeerAddr: f.peerAddr, PeerSecret: f.peerSecret,
		ShutdownGrace: f.limits.grace, PassTimeout: f.limits.timeout, RegistryTimeout: g.registryTimeout,
		SigstoreTUF: g.sigstoreTUF,
		OwedBackoff: f.owedBackoff,
		Signer:      signer, GitAuthorName: f.signing.authorName, GitAuthorEmail: f.signing.authorEmail,
		SignaturePolicies: policies, SignaturePolicyFile: f.signaturePolicies,
	}
	return cfg, cfg.Validate()
}
