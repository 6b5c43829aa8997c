-- Issue 11: which worker holds each WebRTC peer connection, so that a trickled ICE candidate
-- (`POST .../webrtc/offer` with type ice-candidate), which a load balancer may send to any
-- worker or node, is forwarded to the one that has the connection. A row lives as long as the
-- call; rows of a worker that died are overwritten or expire (`created_at`, calls are bounded).
CREATE TABLE rtc_peers (
    webrtc_id  text PRIMARY KEY,
    worker_id  text NOT NULL,
    address    text NOT NULL,             -- that worker's internal base URL
    user_id    text,                      -- only the offerer may trickle candidates
    created_at timestamptz NOT NULL DEFAULT now()
);
