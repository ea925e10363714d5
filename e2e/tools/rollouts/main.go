// Command rollouts-analysis is Argo Rollouts' analysis controller at the version pinned in
// go.mod, alone: what `rollouts-controller --controllers=analysis` runs (the AnalysisRun
// informers and workers with every metric provider), built from the module proxy for the e2e
// stack. Unlike that binary it starts no metrics or health server — Rollouts binds those on
// 0.0.0.0, and the stack's servers listen on 127.0.0.1 only — and links none of the rollout,
// experiment, traffic-router or notification controllers the tests do not use.
package main

import (
	"context"
	"flag"
	"os"
	"os/signal"
	"syscall"
	"time"

	log "github.com/sirupsen/logrus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/dynamic/dynamicinformer"
	kubeinformers "k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"

	"github.com/argoproj/argo-rollouts/analysis"
	"github.com/argoproj/argo-rollouts/controller/metrics"
	jobprovider "github.com/argoproj/argo-rollouts/metricproviders/job"
	clientset "github.com/argoproj/argo-rollouts/pkg/client/clientset/versioned"
	rolloutsconfig "github.com/argoproj/argo-rollouts/utils/config"
	"github.com/argoproj/argo-rollouts/utils/defaults"
	"github.com/argoproj/argo-rollouts/utils/queue"
	"github.com/argoproj/argo-rollouts/utils/record"
	"github.com/argoproj/argo-rollouts/utils/tolerantinformer"
)

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the cluster")
	namespace := flag.String("namespace", metav1.NamespaceAll, "namespace whose AnalysisRuns are run (all by default)")
	threads := flag.Int("analysis-threads", 4, "analysis workers")
	flag.Parse()

	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatal(err)
	}
	kube := kubernetes.NewForConfigOrDie(cfg)
	argo := clientset.NewForConfigOrDie(cfg)
	dyn := dynamic.NewForConfigOrDie(cfg)

	// As rollouts-controller does: its ConfigMap (metric plugins) may be missing.
	if _, err := rolloutsconfig.InitializeConfig(kube, defaults.DefaultRolloutsConfigMapName); err != nil {
		log.Fatal(err)
	}
	const resync = 15 * time.Minute
	dynFactory := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, resync, *namespace, nil)
	clusterFactory := dynamicinformer.NewFilteredDynamicSharedInformerFactory(dyn, resync, metav1.NamespaceAll, nil)
	jobFactory := kubeinformers.NewSharedInformerFactoryWithOptions(kube, resync, kubeinformers.WithNamespace(*namespace),
		kubeinformers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = jobprovider.AnalysisRunUIDLabelKey }))
	runs := tolerantinformer.NewTolerantAnalysisRunInformer(dynFactory)
	templates := tolerantinformer.NewTolerantAnalysisTemplateInformer(dynFactory)
	clusterTemplates := tolerantinformer.NewTolerantClusterAnalysisTemplateInformer(clusterFactory)
	jobs := jobFactory.Batch().V1().Jobs()

	// The controller counts into the metrics server's collectors; nothing serves them.
	metricsServer := metrics.NewMetricsServer(metrics.ServerConfig{
		Addr:                          "127.0.0.1:0",
		AnalysisRunLister:             runs.Lister(),
		AnalysisTemplateLister:        templates.Lister(),
		ClusterAnalysisTemplateLister: clusterTemplates.Lister(),
		K8SRequestProvider:            &metrics.K8sRequestsCountProvider{},
	})
	work := workqueue.NewNamedRateLimitingQueue(queue.DefaultArgoRolloutsRateLimiter(), "AnalysisRuns")
	c := analysis.NewController(analysis.ControllerConfig{
		KubeClientSet:        kube,
		ArgoProjClientset:    argo,
		AnalysisRunInformer:  runs,
		JobInformer:          jobs,
		ResyncPeriod:         resync,
		AnalysisRunWorkQueue: work,
		MetricsServer:        metricsServer,
		Recorder:             record.NewEventRecorder(kube, metrics.MetricRolloutEventsTotal, metrics.MetricNotificationFailedTotal, metrics.MetricNotificationSuccessTotal, metrics.MetricNotificationSend, nil),
	})

	// Informers are made before the factories start: one asked for later would never run.
	synced := []cache.InformerSynced{runs.Informer().HasSynced, templates.Informer().HasSynced, clusterTemplates.Informer().HasSynced, jobs.Informer().HasSynced}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dynFactory.Start(ctx.Done())
	clusterFactory.Start(ctx.Done())
	jobFactory.Start(ctx.Done())
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		log.Fatal("informers did not sync")
	}
	log.Info("analysis controller ready")
	if err := c.Run(ctx, *threads); err != nil {
		log.Fatal(err)
	}
	work.ShutDown()
}
