package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	kafkasendv1alpha1 "kafkasend.io/kafkasend/api/v1alpha1"
	"kafkasend.io/kafkasend/internal/testutil/kafkatest"
	"kafkasend.io/kafkasend/pkg/client"
)

const (
	operatorNS  = "kafkasend-system"
	pipelineNS  = "e2e"
	releaseName = "kafkasend"
	chartPath   = "../../charts/kafkasend"
	// partitions of each requests topic: the autoscaler's ceiling.
	partitions = 4
	// scaleDownWindow is the pipelines' scaleDownStabilizationWindow.
	scaleDownWindow = 20 * time.Second
	// jobTimeout is each job's deadline.
	jobTimeout = 4 * time.Minute
)

// pipeline is one PortalPipeline of the test and its topics.
type pipeline struct {
	name, requests, replies string
}

// topics creates a requests and a replies topic, each with partitions
// partitions.
func topics(t *testing.T, c *cluster, name string) pipeline {
	t.Helper()
	return pipeline{
		name:     name,
		requests: kafkatest.CreateTopic(t, c.brokers, partitions),
		replies:  kafkatest.CreateTopic(t, c.brokers, partitions),
	}
}

// manifest is the pipeline's PortalPipeline as a user writes it, with rev
// as the X-Rev header the workers add to upstream calls.
func (p pipeline) manifest(c *cluster, u *upstream, rev string) string {
	return fmt.Sprintf(`apiVersion: kafkasend.io/v1alpha1
kind: PortalPipeline
metadata:
  name: %s
  namespace: %s
spec:
  kafka:
    bootstrapServers: [%q]
  topics:
    requests: %s
    replies: %s
  upstream:
    baseURL: %s/api
    allowInsecureHTTP: true
    headers:
    - {name: X-Rev, value: %q}
  oauth:
    tokenURL: %s/oauth/token
    allowInsecureHTTP: true
    clientIDSecretRef: {name: %s-oauth, key: client-id}
    clientSecretSecretRef: {name: %s-oauth, key: client-secret}
  concurrency:
    maxInFlight: 2
  timeouts:
    request: 2m
    drain: 20s
  scaling:
    minReplicas: 1
    maxReplicas: 8
    targetBacklogPerReplica: 10
    pollInterval: 2s
    scaleDownStabilizationWindow: %s
  worker:
    imagePullPolicy: Never
    resources:
      requests: {cpu: 20m, memory: 32Mi}
`, p.name, pipelineNS, c.brokers[0], p.requests, p.replies, u.url(), rev, u.url(), p.name, p.name,
		scaleDownWindow)
}

// oauthSecret is the pipeline's OAuth client credentials Secret.
func (p pipeline) oauthSecret(secret string) string {
	return fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata:
  name: %s-oauth
  namespace: %s
stringData:
  client-id: %s
  client-secret: %s
`, p.name, pipelineNS, clientID, secret)
}

// requester is an in-process requester (pkg/client) on its own reply partition.
func (p pipeline) requester(t *testing.T, c *cluster, replyPartition int32) *client.Client {
	t.Helper()
	rc, err := client.New(client.Config{
		Brokers: c.brokers, RequestsTopic: p.requests, ReplyTopic: p.replies, ReplyPartition: replyPartition,
		ClientID: "e2e-requester", Timeout: jobTimeout,
	})
	if err != nil {
		t.Fatalf("requester: %v", err)
	}
	t.Cleanup(func() { _ = rc.Close() })
	return rc
}

// answer is what a requester got for one job.
type answer struct {
	id     string
	status int
	body   string
	err    error
}

// submitAll submits one job per path and returns their IDs in order.
func submitAll(t *testing.T, rc *client.Client, paths []string) []string {
	t.Helper()
	ids := make([]string, len(paths))
	for i, p := range paths {
		u, err := url.Parse(p)
		if err != nil {
			t.Fatal(err)
		}
		req := &http.Request{Method: http.MethodGet, URL: u, Header: http.Header{}}
		// The job's deadline is the earlier of this context's and the
		// requester's Timeout: give it the requester's.
		ctx, cancel := context.WithTimeout(context.Background(), jobTimeout+time.Minute)
		id, err := rc.Submit(ctx, req)
		cancel()
		if err != nil {
			t.Fatalf("submitting job %d (%s): %v", i, p, err)
		}
		ids[i] = id
	}
	return ids
}

// awaitAll waits for every job's answer, at most timeout in all.
func awaitAll(rc *client.Client, ids []string, timeout time.Duration) []answer {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out := make([]answer, len(ids))
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Go(func() {
			a := answer{id: id}
			resp, err := rc.Await(ctx, id)
			if err != nil {
				a.err = err
			} else {
				b, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				a.status, a.body = resp.StatusCode, string(b)
			}
			out[i] = a
		})
	}
	wg.Wait()
	return out
}

// requireAllOK fails the test unless every job was answered with 200.
func requireAllOK(t *testing.T, c *cluster, what string, answers []answer) {
	t.Helper()
	var bad []string
	for _, a := range answers {
		if a.err != nil || a.status != http.StatusOK {
			bad = append(bad, fmt.Sprintf("%s: status %d err %v body %q", a.id, a.status, a.err, a.body))
		}
	}
	if len(bad) > 0 {
		c.dump(t)
		t.Fatalf("%s: %d of %d jobs not answered with 200 (lost or failed); first ones:\n%s",
			what, len(bad), len(answers), strings.Join(bad[:min(len(bad), 10)], "\n"))
	}
	t.Logf("%s: %d of %d jobs answered with 200", what, len(answers), len(answers))
}

// get reads the pipeline.
func (c *cluster) get(t *testing.T, name string) *kafkasendv1alpha1.PortalPipeline {
	t.Helper()
	p := &kafkasendv1alpha1.PortalPipeline{}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := c.ctrl.Get(ctx, types.NamespacedName{Namespace: pipelineNS, Name: name}, p); err != nil {
		t.Fatalf("reading PortalPipeline %s: %v", name, err)
	}
	return p
}

// workerPods lists the pipeline's worker pods (not being deleted).
func (c *cluster) workerPods(t *testing.T, name string) []corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	l, err := c.kube.CoreV1().Pods(pipelineNS).List(ctx, metav1.ListOptions{
		LabelSelector: "app.kubernetes.io/name=kafkasend-portal,app.kubernetes.io/instance=" + name,
	})
	if err != nil {
		t.Fatalf("listing worker pods of %s: %v", name, err)
	}
	var pods []corev1.Pod
	for _, p := range l.Items {
		if p.DeletionTimestamp == nil {
			pods = append(pods, p)
		}
	}
	return pods
}

func podReady(p corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func readyPods(pods []corev1.Pod) int {
	n := 0
	for _, p := range pods {
		if podReady(p) {
			n++
		}
	}
	return n
}

func podIPs(pods []corev1.Pod) []string {
	var ips []string
	for _, p := range pods {
		if p.Status.PodIP != "" {
			ips = append(ips, p.Status.PodIP)
		}
	}
	slices.Sort(ips)
	return ips
}

func cond(p *kafkasendv1alpha1.PortalPipeline, typ string) *metav1.Condition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == typ {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// conds formats the conditions as TYPE=STATUS/REASON.
func conds(p *kafkasendv1alpha1.PortalPipeline) string {
	var s []string
	for _, c := range p.Status.Conditions {
		s = append(s, fmt.Sprintf("%s=%s/%s", c.Type, c.Status, c.Reason))
	}
	return strings.Join(s, " ")
}

// deploymentReplicas is the spec.replicas of the pipeline's Deployment.
func (c *cluster) deploymentReplicas(t *testing.T, name string) (spec, updated, ready int32) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := c.kube.AppsV1().Deployments(pipelineNS).Get(ctx, name+"-portal", metav1.GetOptions{})
	if err != nil {
		return -1, -1, -1
	}
	if d.Spec.Replicas != nil {
		spec = *d.Spec.Replicas
	}
	return spec, d.Status.UpdatedReplicas, d.Status.ReadyReplicas
}

// getQuiet reads the pipeline, returning errors (for the sampler).
func (c *cluster) getQuiet(name string) (*kafkasendv1alpha1.PortalPipeline, error) {
	p := &kafkasendv1alpha1.PortalPipeline{}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := c.ctrl.Get(ctx, types.NamespacedName{Namespace: pipelineNS, Name: name}, p)
	return p, err
}

// workerPodsQuiet lists the worker pods, nil on error (for the sampler).
func (c *cluster) workerPodsQuiet(name string) []corev1.Pod {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l, err := c.kube.CoreV1().Pods(pipelineNS).List(ctx, metav1.ListOptions{
		LabelSelector: "app.kubernetes.io/name=kafkasend-portal,app.kubernetes.io/instance=" + name,
	})
	if err != nil {
		return nil
	}
	var pods []corev1.Pod
	for _, p := range l.Items {
		if p.DeletionTimestamp == nil {
			pods = append(pods, p)
		}
	}
	return pods
}
