package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	kafkasendv1alpha1 "kafkasend.io/kafkasend/api/v1alpha1"
)

// TestOperatorOnARealCluster is the user's path, in order: install, a
// pipeline answering jobs, autoscaling, a rollout and a pod killed with jobs
// in flight, rotated credentials, a spec the worker cannot run, then helm
// upgrade, deletion and uninstall. Each step leaves the pipeline as the next
// one expects it; a failed install stops the rest.
func TestOperatorOnARealCluster(t *testing.T) {
	c := needCluster(t)
	u := startUpstream(t, c.nodeIP)
	u.accept("secret-1")
	c.mustKubectl(t, "", "create", "namespace", pipelineNS)
	orders := topics(t, c, "orders")
	// Prometheus scrapes from the start, as it would on a real cluster.
	prom, promErr := startPrometheus(t, c)

	if !t.Run("install", func(t *testing.T) { testInstall(t, c, u, orders) }) {
		return
	}
	t.Run("helm-test", func(t *testing.T) { testHelmTest(t, c) })
	t.Run("autoscale", func(t *testing.T) { testAutoscale(t, c, u, orders) })
	t.Run("rollout-in-flight", func(t *testing.T) { testRolloutInFlight(t, c, u, orders) })
	t.Run("force-deleted-pod", func(t *testing.T) { testForceDeletedPod(t, c, u, orders) })
	t.Run("rotated-credentials", func(t *testing.T) { testRotatedCredentials(t, c, u, orders) })
	t.Run("prometheus", func(t *testing.T) { testPrometheus(t, c, prom, promErr, orders) })
	t.Run("worker-cannot-run", func(t *testing.T) { testWorkerCannotRun(t, c) })
	// The release must be gone before the installer owns the CRD.
	if !t.Run("upgrade-delete-uninstall", func(t *testing.T) { testUpgradeDeleteUninstall(t, c, orders) }) ||
		!t.Run("crds-keep-false", func(t *testing.T) { testCRDNotKept(t, c) }) {
		t.Errorf("installer step not run: the helm release may still own the CRD")
		return
	}
	t.Run("installer", func(t *testing.T) { testInstaller(t, c, u) })
}

// 1. helm install with the local images; the operator Ready; a pipeline
// with its OAuth Secret applied; kubectl wait; jobs sent with the CLI are
// answered by the worker pods.
func testInstall(t *testing.T, c *cluster, u *upstream, p pipeline) {
	start := time.Now()
	c.helmRun(t, "install", releaseName, chartPath, "-n", operatorNS, "--create-namespace", "--wait", "--timeout", "3m",
		"--set", "image.repository=localhost/kafkasend/operator", "--set", "image.tag="+c.imageTag,
		"--set", "image.pullPolicy=Never",
		"--set", "workerImage.repository=localhost/kafkasend/portal", "--set", "workerImage.tag="+c.imageTag,
		"--set", "apiServer.host="+c.nodeIP, "--set", "apiServer.port="+c.apiPort)
	c.mustKubectl(t, "", "-n", operatorNS, "wait", "--for=condition=Ready", "pod",
		"-l", "app.kubernetes.io/instance="+releaseName, "--timeout=120s")
	t.Logf("helm install: operator Ready after %s", time.Since(start).Round(100*time.Millisecond))

	start = time.Now()
	c.mustKubectl(t, p.oauthSecret("secret-1")+"---\n"+p.manifest(c, u, "1"), "apply", "-f", "-")
	if _, err := c.kubectl1(3*time.Minute, "", "-n", pipelineNS, "wait", "--for=condition=Ready",
		"portalpipeline/"+p.name, "--timeout=150s"); err != nil {
		c.dump(t)
		t.Fatalf("pipeline not Ready: %v", err)
	}
	t.Logf("kubectl apply to Ready: %s", time.Since(start).Round(100*time.Millisecond))
	t.Logf("kubectl get portalpipelines:\n%s", c.mustKubectl(t, "", "-n", pipelineNS, "get", "portalpipelines", "-o", "wide"))

	ips := podIPs(c.workerPods(t, p.name))
	env := cleanEnv("KAFKASEND_BROKERS="+strings.Join(c.brokers, ","), "KAFKASEND_TOPIC="+p.requests,
		"KAFKASEND_REPLY_TOPIC="+p.replies, "KAFKASEND_REPLY_PARTITION=0", "KAFKASEND_TIMEOUT=90s")
	for i := range 3 {
		out, err := run(2*time.Minute, "", env, c.kafkasend, "send", "-i", fmt.Sprintf("/echo?id=cli-%d", i))
		if err != nil {
			c.dump(t)
			t.Fatalf("kafkasend send: %v", err)
		}
		if first, _, _ := strings.Cut(out, "\r\n"); !strings.HasPrefix(first, "HTTP/") || !strings.Contains(first, " 200") {
			t.Fatalf("kafkasend send: want an HTTP 200 answer, got:\n%s", out)
		}
		var caller string
		for _, ip := range ips {
			if strings.Contains(out, `"caller":"`+ip+`"`) {
				caller = ip
			}
		}
		if caller == "" {
			t.Fatalf("the answer does not come from a worker pod (pod IPs %v):\n%s", ips, out)
		}
		if !strings.Contains(out, `"rev":"1"`) {
			t.Fatalf("the pipeline's X-Rev header did not reach the upstream:\n%s", out)
		}
		t.Logf("kafkasend send answered by worker pod %s", caller)
	}
}

// sample is one line of the autoscaling timeline.
type sample struct {
	at                          time.Duration
	lag                         int64
	lagKnown                    bool
	specReplicas, deployReplica int32
	pods, ready                 int
	conds                       string
	progressing                 bool
}

func (s sample) String() string {
	lag := "?"
	if s.lagKnown {
		lag = fmt.Sprint(s.lag)
	}
	return fmt.Sprintf("%6.1fs  lag %5s  pipeline.spec.replicas %2d  deployment %2d  pods %2d  ready %2d  %s",
		s.at.Seconds(), lag, s.specReplicas, s.deployReplica, s.pods, s.ready, s.conds)
}

// timeline samples the pipeline every second until stop is closed.
func (c *cluster) timeline(t *testing.T, name string, start time.Time, stop <-chan struct{}) func() []sample {
	var mu sync.Mutex
	var samples []sample
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			p, err := c.getQuiet(name)
			if err != nil {
				continue
			}
			s := sample{at: time.Since(start), conds: conds(p)}
			if p.Status.ConsumerLag != nil {
				s.lag, s.lagKnown = *p.Status.ConsumerLag, true
			}
			if p.Spec.Replicas != nil {
				s.specReplicas = *p.Spec.Replicas
			}
			if pc := cond(p, "Progressing"); pc != nil && pc.Status == metav1.ConditionTrue {
				s.progressing = true
			}
			s.deployReplica, _, _ = c.deploymentReplicas(t, name)
			pods := c.workerPodsQuiet(name)
			s.pods, s.ready = len(pods), readyPods(pods)
			mu.Lock()
			samples = append(samples, s)
			mu.Unlock()
		}
	}()
	return func() []sample {
		<-done
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(samples)
	}
}

// 2. A backlog scales the workers up, capped at the partition count; the new
// pods join and the backlog drains; after the stabilisation window the
// Deployment scales back down.
func testAutoscale(t *testing.T, c *cluster, u *upstream, p pipeline) {
	rc := p.requester(t, c, 1)
	const jobs = 400 // 500 ms each, 2 at a time per pod: 100 s on one pod, 25 s on four
	paths := make([]string, jobs)
	for i := range paths {
		paths[i] = fmt.Sprintf("/slow?ms=500&id=as-%d", i)
	}
	start := time.Now()
	stop := make(chan struct{})
	collect := c.timeline(t, p.name, start, stop)
	ids := submitAll(t, rc, paths)
	t.Logf("%d jobs submitted in %s", jobs, time.Since(start).Round(100*time.Millisecond))
	answers := awaitAll(rc, ids, 4*time.Minute)
	drained := time.Since(start)

	// Scale-down after the window: back to minReplicas.
	c.waitFor(t, "scale-down to 1 replica", scaleDownWindow+90*time.Second, func() (bool, string) {
		spec, _, _ := c.deploymentReplicas(t, p.name)
		return spec == 1 && len(c.workerPods(t, p.name)) == 1, fmt.Sprintf("deployment replicas %d", spec)
	})
	time.Sleep(2 * time.Second)
	close(stop)
	samples := collect()
	var b strings.Builder
	for _, s := range samples {
		b.WriteString(s.String() + "\n")
	}
	t.Logf("autoscaling timeline (backlog of %d jobs submitted at 0s, all answered at %.1fs):\n%s", jobs, drained.Seconds(), b.String())
	requireAllOK(t, c, "autoscale", answers)

	var peak, peakReady int32
	var sawProgressing bool
	var lagBelowAt, scaledDownAt, peakAt time.Duration = -1, -1, -1
	for _, s := range samples {
		if s.deployReplica > peak {
			peak, peakAt = s.deployReplica, s.at
		}
		peakReady = max(peakReady, int32(s.ready))
		sawProgressing = sawProgressing || s.progressing
		if peak == partitions && lagBelowAt < 0 && s.lagKnown && s.lag <= int64(partitions-1)*10 {
			lagBelowAt = s.at
		}
		if peak == partitions && scaledDownAt < 0 && s.deployReplica > 0 && s.deployReplica < partitions {
			scaledDownAt = s.at
		}
	}
	if peak != partitions {
		t.Errorf("peak replicas %d, want %d: the backlog asks for %d (backlog / targetBacklogPerReplica 10) within maxReplicas 8, capped at the %d partitions",
			peak, partitions, jobs/10, partitions)
	}
	if peakReady != partitions {
		t.Errorf("at most %d worker pods were ready, want %d", peakReady, partitions)
	}
	if !sawProgressing {
		t.Errorf("the Progressing condition was never True while scaling")
	}
	if last := samples[len(samples)-1]; !last.lagKnown || last.lag != 0 {
		t.Errorf("the backlog did not drain: last lag %v (known %v)", last.lag, last.lagKnown)
	}
	if lagBelowAt >= 0 && scaledDownAt >= 0 && scaledDownAt-lagBelowAt < scaleDownWindow-4*time.Second {
		t.Errorf("scaled down at %.1fs, %.1fs after the lag fell below what %d replicas carry (%.1fs): sooner than the %s stabilisation window",
			scaledDownAt.Seconds(), (scaledDownAt - lagBelowAt).Seconds(), partitions, lagBelowAt.Seconds(), scaleDownWindow)
	}
	t.Logf("peak %d replicas at %.1fs; lag below the 4-replica target at %.1fs; scale-down at %.1fs", peak, peakAt.Seconds(), lagBelowAt.Seconds(), scaledDownAt.Seconds())
	events := c.mustKubectl(t, "", "-n", pipelineNS, "get", "events", "--field-selector", "reason=Scaled", "-o", "custom-columns=REASON:.reason,MESSAGE:.message,OBJECT:.involvedObject.name")
	if !strings.Contains(events, "Scaled workers from") {
		t.Errorf("no Scaled event on the pipeline; events:\n%s", events)
	}
	t.Logf("events:\n%s", events)
	_, callers, _, _, _, _ := u.snapshot()
	t.Logf("upstream calls per worker pod address: %v", callers)
}

// 3. A config change rolls the workers while jobs are in flight: every job
// is answered.
func testRolloutInFlight(t *testing.T, c *cluster, u *upstream, p pipeline) {
	rc := p.requester(t, c, 2)
	before := podNames(c.workerPods(t, p.name))
	const jobs = 120
	paths := make([]string, jobs)
	for i := range paths {
		paths[i] = fmt.Sprintf("/slow?ms=300&id=ro-%d", i)
	}
	ids := submitAll(t, rc, paths)
	c.waitFor(t, "calls in flight", time.Minute, func() (bool, string) {
		calls, _, _, _, _, _ := u.snapshot()
		n := 0
		for i := range jobs {
			if calls[fmt.Sprintf("ro-%d", i)] > 0 {
				n++
			}
		}
		return n >= 10, fmt.Sprintf("%d jobs called", n)
	})
	c.mustKubectl(t, p.manifest(c, u, "2"), "apply", "-f", "-")
	t.Logf("X-Rev changed from 1 to 2 with jobs in flight")
	answers := awaitAll(rc, ids, 4*time.Minute)
	requireAllOK(t, c, "rollout", answers)

	c.waitFor(t, "rollout complete", 3*time.Minute, func() (bool, string) {
		spec, updated, ready := c.deploymentReplicas(t, p.name)
		pods := c.workerPods(t, p.name)
		return spec > 0 && updated == spec && ready == spec && len(pods) == int(spec),
			fmt.Sprintf("replicas %d updated %d ready %d pods %d", spec, updated, ready, len(pods))
	})
	after := podNames(c.workerPods(t, p.name))
	for _, n := range after {
		if slices.Contains(before, n) {
			t.Errorf("pod %s survived the config change: pods before %v, after %v", n, before, after)
		}
	}
	// The old workers may have answered every job before the new ones were
	// up (they keep their running jobs through the hand-over): jobs sent
	// now show that the new configuration reached the new pods.
	probe := make([]string, 10)
	for i := range probe {
		probe[i] = fmt.Sprintf("/slow?ms=10&id=ro-after-%d", i)
	}
	requireAllOK(t, c, "after the rollout", awaitAll(rc, submitAll(t, rc, probe), 2*time.Minute))
	calls, _, revs, _, _, _ := u.snapshot()
	if revs["2"] == 0 {
		t.Errorf("no upstream call carried the new X-Rev 2: %v", revs)
	}
	dups := 0
	for i := range jobs {
		if calls[fmt.Sprintf("ro-%d", i)] > 1 {
			dups++
		}
	}
	t.Logf("rollout: pods %v -> %v; upstream calls by X-Rev %v; %d jobs called more than once", before, after, revs, dups)
}

func podNames(pods []corev1.Pod) []string {
	var n []string
	for _, p := range pods {
		n = append(n, p.Name)
	}
	slices.Sort(n)
	return n
}

// 4. A worker pod force-deleted mid-call: every job is still answered.
func testForceDeletedPod(t *testing.T, c *cluster, u *upstream, p pipeline) {
	rc := p.requester(t, c, 3)
	// The rollout's scale-up may still be winding down: pods that are going
	// keep answering their running jobs (hand-over), so the victim is
	// chosen among the pods that stay.
	const jobs = 30
	paths := make([]string, jobs)
	for i := range paths {
		paths[i] = fmt.Sprintf("/slow?ms=3000&id=fd-%d", i)
	}
	ids := submitAll(t, rc, paths)
	var victim, victimIP string
	c.waitFor(t, "a worker pod (not being deleted) with calls in flight", time.Minute, func() (bool, string) {
		_, _, _, inflight, _, _ := u.snapshot()
		best := 0
		for _, pod := range c.workerPods(t, p.name) {
			if n := inflight[pod.Status.PodIP]; pod.Status.PodIP != "" && n > best {
				victim, victimIP, best = pod.Name, pod.Status.PodIP, n
			}
		}
		return best > 0, fmt.Sprintf("calls in flight by address %v", inflight)
	})
	c.mustKubectl(t, "", "-n", pipelineNS, "delete", "pod", victim, "--grace-period=0", "--force")
	t.Logf("force-deleted %s (%s) with calls in flight", victim, victimIP)
	answers := awaitAll(rc, ids, 4*time.Minute)
	requireAllOK(t, c, "force-deleted pod", answers)
	calls, _, _, _, _, _ := u.snapshot()
	again := 0
	for i := range jobs {
		if calls[fmt.Sprintf("fd-%d", i)] > 1 {
			again++
		}
	}
	// Whether calls are made again depends on how far the deleted pod got
	// with its drain before it was killed; the user-visible outcome is that
	// every job is answered.
	t.Logf("%d jobs were called again after the pod went", again)
}

// 5. Rotated OAuth client credentials are used without a pod restart.
func testRotatedCredentials(t *testing.T, c *cluster, u *upstream, p pipeline) {
	rc := p.requester(t, c, 0)
	restarts := func() map[string]int32 {
		m := map[string]int32{}
		for _, pod := range c.workerPods(t, p.name) {
			for _, s := range pod.Status.ContainerStatuses {
				m[pod.Name] += s.RestartCount
			}
		}
		return m
	}
	c.waitFor(t, "the pipeline back at one ready worker", 2*time.Minute, func() (bool, string) {
		pods := c.workerPods(t, p.name)
		return len(pods) == 1 && readyPods(pods) == 1, fmt.Sprintf("%d pods", len(pods))
	})
	before := restarts()
	u.accept("secret-1", "secret-2")
	c.mustKubectl(t, p.oauthSecret("secret-2"), "apply", "-f", "-")
	start := time.Now()
	n := 0
	c.waitFor(t, "a token fetched with the rotated client secret", 3*time.Minute, func() (bool, string) {
		ids := submitAll(t, rc, []string{fmt.Sprintf("/echo?id=rot-%d", n)})
		n++
		if a := awaitAll(rc, ids, time.Minute)[0]; a.err != nil || a.status != http.StatusOK {
			c.dump(t)
			t.Fatalf("job %s during the rotation: status %d err %v body %q", a.id, a.status, a.err, a.body)
		}
		_, _, _, _, bySecret, _ := u.snapshot()
		return bySecret["secret-2"] > 0, fmt.Sprintf("tokens per secret %v", bySecret)
	})
	t.Logf("rotated secret in use %s after the Secret changed", time.Since(start).Round(100*time.Millisecond))
	// The old secret no longer works: jobs still succeed with the new one.
	u.accept("secret-2")
	time.Sleep(3 * time.Second)
	ids := submitAll(t, rc, []string{"/echo?id=rot-a", "/echo?id=rot-b", "/echo?id=rot-c"})
	requireAllOK(t, c, "after revoking the old secret", awaitAll(rc, ids, 2*time.Minute))
	after := restarts()
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("worker pods or their restart counts changed: before %v, after %v", before, after)
	}
}

// 6. A spec the API server accepts but the worker cannot run (an upstream CA
// bundle that holds no certificate) does not sit in CrashLoopBackOff behind
// a green status: the status says why.
func testWorkerCannotRun(t *testing.T, c *cluster) {
	p := topics(t, c, "badca")
	manifest := fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata: {name: badca-ca, namespace: %[1]s}
stringData:
  ca.crt: "this is not a PEM certificate"
---
apiVersion: kafkasend.io/v1alpha1
kind: PortalPipeline
metadata: {name: badca, namespace: %[1]s}
spec:
  kafka: {bootstrapServers: [%[2]q]}
  topics: {requests: %[3]s, replies: %[4]s}
  upstream:
    baseURL: https://%[5]s:8443/api
    caSecretRef: {name: badca-ca, key: ca.crt}
  scaling: {mode: Manual}
  replicas: 1
  worker:
    imagePullPolicy: Never
    resources: {requests: {cpu: 10m, memory: 32Mi}}
`, pipelineNS, c.brokers[0], p.requests, p.replies, c.nodeIP)
	c.mustKubectl(t, manifest, "apply", "-f", "-")
	t.Cleanup(func() {
		_, _ = c.kubectl1(time.Minute, "", "-n", pipelineNS, "delete", "portalpipeline", "badca", "--wait=false")
	})

	// First the failure itself, as the pods show it.
	var lastTermination string
	c.waitFor(t, "the badca worker in CrashLoopBackOff", 3*time.Minute, func() (bool, string) {
		for _, pod := range c.workerPods(t, p.name) {
			for _, s := range pod.Status.ContainerStatuses {
				if s.LastTerminationState.Terminated != nil {
					lastTermination = strings.TrimSpace(s.LastTerminationState.Terminated.Message)
				}
				if s.State.Waiting != nil && s.State.Waiting.Reason == "CrashLoopBackOff" {
					return true, ""
				}
			}
		}
		return false, "last termination: " + lastTermination
	})
	t.Logf("worker's last termination message: %s", lastTermination)

	// Then the status: it must say why, not just "unavailable".
	var last string
	deadline := time.Now().Add(90 * time.Second)
	for {
		pp := c.get(t, p.name)
		last = statusSummary(pp)
		if saysWhy(pp) {
			t.Logf("status names the failure: %s", last)
			return
		}
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Second)
	}
	t.Errorf("the worker crash-loops (last termination: %q) but the PortalPipeline's status does not say why within 90s: "+
		"want Degraded=True or Ready=False with a reason or message naming the failure (CrashLoopBackOff, InvalidSpec or the worker's error); got %s",
		lastTermination, last)
}

// saysWhy reports whether a Degraded=True or Ready=False condition names
// the worker's failure: a reason or message about the crash loop, the
// invalid spec, or the worker's own error (the CA bundle).
func saysWhy(p *kafkasendv1alpha1.PortalPipeline) bool {
	for _, c := range p.Status.Conditions {
		bad := (c.Type == "Degraded" && c.Status == metav1.ConditionTrue) || (c.Type == "Ready" && c.Status == metav1.ConditionFalse)
		if !bad {
			continue
		}
		text := strings.ToLower(c.Reason + " " + c.Message)
		for _, word := range []string{"crashloop", "invalidspec", "pem", "cafile", "certificate"} {
			if strings.Contains(text, word) {
				return true
			}
		}
	}
	return false
}

// statusSummary formats the conditions with their messages.
func statusSummary(p *kafkasendv1alpha1.PortalPipeline) string {
	var s []string
	for _, c := range p.Status.Conditions {
		s = append(s, fmt.Sprintf("%s=%s reason %q message %q", c.Type, c.Status, c.Reason, c.Message))
	}
	return strings.Join(s, "; ")
}

// 7. helm upgrade to a chart whose CRD changed (the change reaches the
// live CRD, and kubectl shows the new column) with a changed value (it
// reaches the pods), kubectl delete of the pipeline (its children are
// garbage-collected), helm uninstall (nothing left but the CRD, kept by
// crds.keep, and what the manager wrote at run time).
func testUpgradeDeleteUninstall(t *testing.T, c *cluster, p pipeline) {
	if cols := c.liveColumns(t); strings.Contains(" "+cols+" ", " "+markerColumn+" ") {
		t.Fatalf("the CRD already has the %s column: %s", markerColumn, cols)
	}
	c.helmRun(t, "upgrade", releaseName, chartWithCRDChange(t), "-n", operatorNS, "--reuse-values", "--set", "logLevel=debug", "--wait", "--timeout", "3m")
	cols := c.liveColumns(t)
	if !strings.Contains(" "+cols+" ", " "+markerColumn+" ") {
		t.Errorf("after helm upgrade the live CRD's printer columns are %q, want the upgraded chart's %s column", cols, markerColumn)
	}
	// The API server serves the new column at once: kubectl prints it.
	c.waitFor(t, "kubectl get portalpipelines showing the upgraded CRD's column", time.Minute, func() (bool, string) {
		out, err := c.kubectl1(time.Minute, "", "-n", pipelineNS, "get", "portalpipeline", p.name)
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(out, strings.ToUpper(markerColumn)) && strings.Contains(out, p.requests), out
	})
	t.Logf("helm upgrade: live CRD printer columns %s", cols)
	c.waitFor(t, "the operator pod running with --zap-log-level=debug", 2*time.Minute, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		l, err := c.kube.CoreV1().Pods(operatorNS).List(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/instance=" + releaseName})
		if err != nil {
			return false, err.Error()
		}
		var state []string
		for _, pod := range l.Items {
			args := strings.Join(pod.Spec.Containers[0].Args, " ")
			if pod.DeletionTimestamp == nil && podReady(pod) && strings.Contains(args, "--zap-log-level=debug") && len(l.Items) == 1 {
				return true, ""
			}
			state = append(state, pod.Name+": "+args)
		}
		return false, strings.Join(state, "; ")
	})

	c.mustKubectl(t, "", "-n", pipelineNS, "delete", "portalpipeline", p.name, "--timeout=2m")
	c.waitFor(t, "the pipeline's children garbage-collected", 2*time.Minute, func() (bool, string) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		child := p.name + "-portal"
		var left []string
		if _, err := c.kube.AppsV1().Deployments(pipelineNS).Get(ctx, child, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			left = append(left, "Deployment")
		}
		if _, err := c.kube.CoreV1().ConfigMaps(pipelineNS).Get(ctx, child, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			left = append(left, "ConfigMap")
		}
		if _, err := c.kube.CoreV1().ServiceAccounts(pipelineNS).Get(ctx, child, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			left = append(left, "ServiceAccount")
		}
		if _, err := c.kube.CoreV1().Services(pipelineNS).Get(ctx, child, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			left = append(left, "Service")
		}
		if _, err := c.kube.PolicyV1().PodDisruptionBudgets(pipelineNS).Get(ctx, child, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			left = append(left, "PodDisruptionBudget")
		}
		if n := len(c.workerPods(t, p.name)); n > 0 {
			left = append(left, fmt.Sprintf("%d pods", n))
		}
		return len(left) == 0, "left: " + strings.Join(left, ", ")
	})

	c.helmRun(t, "uninstall", releaseName, "-n", operatorNS, "--wait", "--timeout", "2m")
	c.waitFor(t, "nothing of the release left", 2*time.Minute, func() (bool, string) {
		out, err := c.kubectl1(time.Minute, "", "get",
			"deployments,replicasets,pods,services,serviceaccounts,configmaps,secrets,roles,rolebindings,poddisruptionbudgets",
			"-n", operatorNS, "-o", "name")
		if err != nil {
			return false, err.Error()
		}
		var left []string
		for _, o := range strings.Fields(out) {
			switch o {
			case "serviceaccount/default", "configmap/kube-root-ca.crt":
				continue
			}
			left = append(left, o)
		}
		cl, err := c.kubectl1(time.Minute, "", "get", "clusterroles,clusterrolebindings", "-l", "app.kubernetes.io/instance="+releaseName, "-o", "name")
		if err != nil {
			return false, err.Error()
		}
		left = append(left, strings.Fields(cl)...)
		return len(left) == 0, "left: " + strings.Join(left, " ")
	})
	// What stays, as the chart's README says: the CRD (and the manager's
	// leader-election Lease, written at run time, not by Helm).
	if _, err := c.kubectl1(time.Minute, "", "get", "crd", "portalpipelines.kafkasend.io"); err != nil {
		t.Errorf("the CRD should outlive helm uninstall: %v", err)
	}
	leases, _ := c.kubectl1(time.Minute, "", "get", "leases", "-n", operatorNS, "-o", "name")
	t.Logf("after helm uninstall: CRD kept; leases in %s: %s", operatorNS, strings.TrimSpace(leases))
}
