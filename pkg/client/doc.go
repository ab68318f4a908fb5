// Package client is the requester side of kafkasend: it sends HTTP requests
// as REST jobs over Kafka to a kafkasend portal and returns the portal's
// answers as ordinary *http.Response values.
//
// A Client produces each job, split into chunk records as docs/protocol.md
// describes, to the requests topic, and reads the answers from one partition
// of a reply topic. Three ways to use it:
//
//   - Transport, an http.RoundTripper: any *http.Client (and any library
//     built on one) can talk to the upstream API through Kafka. The request
//     URL's path and query become the job's path and query; its host is
//     ignored, since the portal decides the upstream.
//   - Do(ctx, req): the same, without an http.Client around it.
//   - Submit(ctx, req) and Await(ctx, jobID): for long jobs. Submit returns
//     the job ID as soon as Kafka has acknowledged the job; Await returns the
//     response when it comes, in this process or in a later one.
//
// # Reply correlation: one reply partition per client instance
//
// Every Client claims one partition of its reply topic (Config.ReplyPartition)
// and asks the portal, in each job, to answer on that partition. It reads
// only that partition, so several requester instances (processes, pods)
// share one reply topic without ever reading each other's answers: give each
// instance its own partition (for example the pod's ordinal), and create the
// reply topic with at least as many partitions as instances.
//
// The job IDs a Client makes are chosen so that the portal's default
// placement of an answer (sarama's hash partitioner on the job ID) is the
// claimed partition as well. So even an answer that the portal produces
// before it could read the job's metadata (too_large on the first chunk,
// incomplete, malformed) reaches the instance that is waiting for it, as
// long as the reply topic is the pipeline's default reply topic. Requests
// themselves are spread over the requests topic's partitions round-robin
// (all chunks of a job go to the same partition), so the key choice does not
// skew the portal's load.
//
// Responses are matched to callers by job ID (the record key). A response
// for a job this instance is not waiting for (a late answer after the caller
// gave up, a second answer after a portal re-executed a job, an answer meant
// for a previous process) is counted in Stats and dropped; it is never
// handed to another caller.
//
// # Restarts
//
// A new Client starts reading its reply partition at the newest offset:
// answers to jobs it sends are never missed, because it is reading before
// it sends. To Await a job sent by an earlier process, keep its job ID; the
// new Client's Await scans the reply partition from Config.ResumeOffset (by
// default the oldest retained offset; record ReplyOffset at start-up to scan
// less) for that job ID, and then keeps waiting for it on the live stream.
//
// # Errors
//
// A job that ends without the upstream's answer (the portal timed out, was
// refused by policy, could not reach the upstream, ...) makes Do, Await and
// RoundTrip return a *Error whose Kind is the protocol's error kind; test
// it with errors.Is(err, client.ErrTimeout) and friends. Any HTTP status of
// the upstream, 404 or 500 included, is a normal response, not an error. A
// caller's deadline that passes before an answer arrives also yields an
// error matching ErrTimeout (and context.DeadlineExceeded).
package client
