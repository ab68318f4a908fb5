package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	kafkasendv1alpha1 "kafkasend.io/kafkasend/api/v1alpha1"
)

// dryRunPipeline is the PortalPipeline selftest has the API server validate
// (and not store): the CRD's schema and CEL rules must accept it.
const dryRunPipeline = `
apiVersion: kafkasend.io/v1alpha1
kind: PortalPipeline
metadata:
  name: kafkasend-selftest
spec:
  kafka:
    bootstrapServers: ["kafka-0.kafka:9092"]
  topics:
    requests: selftest.requests
    replies: selftest.replies
  upstream:
    baseURL: https://api.internal.example/v1
  oauth:
    tokenURL: https://login.internal.example/oauth2/token
    clientIDSecretRef: {name: selftest-oauth, key: client-id}
    clientSecretSecretRef: {name: selftest-oauth, key: client-secret}
`

// selftest is `manager selftest`, what the chart's `helm test` pod runs: it
// waits until the operator Deployment is available, then has the API server
// validate a PortalPipeline with a server-side dry run. It prints one line
// per check to out and returns an error naming the first that failed.
func selftest(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("manager selftest", flag.ContinueOnError)
	fs.SetOutput(out)
	namespace := fs.String("namespace", "", "Namespace of the operator Deployment and of the dry-run PortalPipeline. Required.")
	deployment := fs.String("deployment", "", "Name of the operator Deployment. Required.")
	timeout := fs.Duration("timeout", 2*time.Minute, "How long to wait for the operator to become available.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *namespace == "" || *deployment == "" {
		return errors.New("selftest: --namespace and --deployment are required")
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("selftest: %w", err)
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(kafkasendv1alpha1.AddToScheme(scheme))
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return fmt.Errorf("selftest: creating a client: %w", err)
	}

	key := client.ObjectKey{Namespace: *namespace, Name: *deployment}
	var last string
	err = wait.PollUntilContextTimeout(ctx, time.Second, *timeout, true, func(ctx context.Context) (bool, error) {
		var d appsv1.Deployment
		if err := c.Get(ctx, key, &d); err != nil {
			if ctx.Err() == nil || last == "" {
				last = err.Error()
			}
			return false, nil //nolint:nilerr // keep polling; the last error is reported at the timeout
		}
		ok, why := available(&d)
		last = why
		return ok, nil
	})
	if err != nil {
		return fmt.Errorf("selftest: operator Deployment %s is not available after %s: %s", key, *timeout, last)
	}
	fmt.Fprintf(out, "ok: operator Deployment %s is available\n", key)

	var p kafkasendv1alpha1.PortalPipeline
	if err := yaml.UnmarshalStrict([]byte(dryRunPipeline), &p); err != nil {
		return fmt.Errorf("selftest: decoding the dry-run PortalPipeline: %w", err)
	}
	p.Namespace = *namespace
	if err := c.Create(ctx, &p, client.DryRunAll); err != nil {
		return fmt.Errorf("selftest: the API server refused a valid PortalPipeline (dry run): %w", err)
	}
	fmt.Fprintf(out, "ok: the API server accepts a PortalPipeline in %s (server-side dry run)\n", *namespace)
	return nil
}

// available reports whether the Deployment's current generation has all its
// replicas available, and why not.
func available(d *appsv1.Deployment) (bool, string) {
	want := int32(1)
	if d.Spec.Replicas != nil {
		want = *d.Spec.Replicas
	}
	if d.Status.ObservedGeneration < d.Generation {
		return false, "its controller has not seen the latest spec yet"
	}
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable && c.Status != corev1.ConditionTrue {
			return false, fmt.Sprintf("condition Available is %s: %s", c.Status, c.Message)
		}
	}
	if d.Status.AvailableReplicas < want || want == 0 {
		return false, fmt.Sprintf("%d of %d replicas available", d.Status.AvailableReplicas, want)
	}
	return true, ""
}
