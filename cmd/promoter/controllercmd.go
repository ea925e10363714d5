package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/kropipe/kropipe/internal/promote/argocd"
	"github.com/kropipe/kropipe/internal/promote/controller"
	"github.com/kropipe/kropipe/internal/promote/kubestate"
	"github.com/kropipe/kropipe/internal/promote/leader"
	"github.com/kropipe/kropipe/internal/version"
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
	leaderElect        bool
	stateConfigMap     string
	healthAddr         string
}

func newControllerCommand(g *globals) *cobra.Command {
	f := &controllerFlags{}
	cmd := &cobra.Command{
		Use:   "controller",
		Short: "Run in the cluster: stages from Argo CD annotations, one leader, state in a ConfigMap",
		Long: "controller reads the stages from kropipe.io/* annotations on Argo CD Applications and\n" +
			"ApplicationSets in --watch-namespaces, promotes new tags by committing them to Git, and keeps\n" +
			"approvals, verifications and pauses in the ConfigMap --state-configmap. With --leader-elect\n" +
			"(the default) replicas campaign for a Lease and only the leader promotes; every replica serves\n" +
			"the API on --addr (loopback: use kubectl port-forward) and probes and metrics on --health-addr.\n" +
			"--leader-elect=false starts promoting at once, without waiting for a Lease: for a single\n" +
			"replica only (two replicas without it would both write to Git). Logs are JSON on stderr.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := g.jsonLogger()
			// client-go logs (leader election, informers) through klog: send them to the same
			// JSON stream.
			klog.SetSlogLogger(log)
			kube, dyn, ns, err := f.connect(g)
			if err != nil {
				return err
			}
			if f.namespace == "" {
				f.namespace = ns
			}
			return runController(cmd.Context(), g, f, kube, dyn, log)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.kubeconfig, "kubeconfig", "", "kubeconfig file (default: $KUBECONFIG, ~/.kube/config, else the in-cluster service account)")
	fl.StringVar(&f.namespace, "namespace", "", "the promoter's namespace: its Lease, state ConfigMap and pull secrets (default $POD_NAMESPACE, else the kubeconfig's or the pod's namespace)")
	fl.StringVar(&f.argocdNamespace, "argocd-namespace", "argocd", "Argo CD's own namespace: its repository Secrets give the Git credentials")
	fl.StringSliceVar(&f.watchNamespaces, "watch-namespaces", []string{"argocd"}, "namespaces whose Argo CD Applications and ApplicationSets to read (comma-separated)")
	fl.StringSliceVar(&f.pullSecrets, "pull-secrets", nil, "names of kubernetes.io/dockerconfigjson Secrets in --namespace holding registry credentials (comma-separated)")
	fl.StringSliceVar(&f.insecureRegistries, "insecure-registry", nil, "registry hosts (host:port) reached over plain HTTP, e.g. an in-cluster registry (repeatable)")
	fl.DurationVar(&f.interval, "interval", 5*time.Minute, "longest time between passes; a stage's kropipe.io/interval may shorten it")
	fl.DurationVar(&f.healthTimeout, "health-timeout", argocd.DefaultGateTimeout, "how long a promoted Application may stay Degraded or its sync failed before the promotion fails (and, with kropipe.io/auto-rollback, is rolled back)")
	fl.BoolVar(&f.leaderElect, "leader-elect", true, "campaign for the Lease "+leader.DefaultName+" so only one replica promotes; false promotes at once without a Lease, safe only with a single replica")
	fl.StringVar(&f.stateConfigMap, "state-configmap", kubestate.DefaultName, "ConfigMap in --namespace keeping approvals, verifications and pauses")
	f.webhook.register(fl)
	fl.StringVar(&f.healthAddr, "health-addr", "", "where to serve /healthz, /readyz and /metrics only, e.g. :8081 for kubelet probes and Prometheus (default: off)")
	return cmd
}

// connect builds the Kubernetes clients from --kubeconfig, the usual kubeconfig places or the
// in-cluster service account, and finds the namespace to default --namespace to.
func (f *controllerFlags) connect(g *globals) (kubernetes.Interface, dynamic.Interface, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = f.kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{})
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, nil, "", fmt.Errorf("no Kubernetes connection: %w; pass --kubeconfig, or run in a pod with a service account", err)
	}
	cfg.UserAgent = "kropipe-promoter/" + version.Version
	// Informers do the reading; writes are a few patches per promotion.
	cfg.QPS, cfg.Burst = 20, 40
	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, nil, "", err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, nil, "", err
	}
	ns := g.getenv("POD_NAMESPACE")
	if ns == "" {
		ns, _, _ = cc.Namespace()
	}
	return kube, dyn, ns, nil
}

// jsonLogger is the controller's logger: structured JSON for the cluster's log pipeline.
func (g *globals) jsonLogger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(g.stderr, &slog.HandlerOptions{Level: g.level()}))
}

// runController checks the flags, naming them in its errors, and runs the replica.
func runController(ctx context.Context, g *globals, f *controllerFlags, kube kubernetes.Interface, dyn dynamic.Interface, log *slog.Logger) error {
	if f.namespace == "" {
		return errors.New("no namespace for the Lease and the state ConfigMap: pass --namespace (in a pod, set POD_NAMESPACE from the downward API)")
	}
	if f.interval <= 0 {
		return errors.New("--interval must be positive, e.g. 5m")
	}
	if f.healthTimeout <= 0 {
		return errors.New("--health-timeout must be positive, e.g. 5m")
	}
	if len(f.watchNamespaces) == 0 {
		return errors.New("--watch-namespaces is empty: name the namespaces of the Argo CD Applications, e.g. argocd")
	}
	tok, loopback, err := g.apiAuth("other pods", "give --token-file (mount it from a Secret) so only holders of the token can promote, or keep 127.0.0.1 and use kubectl port-forward")
	if err != nil {
		return err
	}
	secret, err := f.webhook.readSecret(g)
	if err != nil {
		return err
	}
	dir, err := g.stateDir()
	if err != nil {
		return err
	}
	return controller.Run(ctx, controller.Config{
		Kube: kube, Dynamic: dyn, Logger: log,
		Namespace: f.namespace, ArgoCDNamespace: f.argocdNamespace, WatchNamespaces: f.watchNamespaces,
		PullSecrets: f.pullSecrets, InsecureRegistries: f.insecureRegistries,
		Interval: f.interval, HealthTimeout: f.healthTimeout,
		LeaderElect: f.leaderElect, StateConfigMap: f.stateConfigMap, DataDir: dir,
		Addr: g.addr, Token: tok, RequireToken: !loopback, HealthAddr: f.healthAddr,
		WebhookAddr: f.webhook.addr, WebhookSecret: secret, PodIP: g.getenv("POD_IP"),
	})
}
