-- Shared by every scenario: print one machine-readable line at the end.
function done(summary, latency, requests)
  io.write(string.format(
    "RESULT requests=%d duration_us=%d p50_us=%d p99_us=%d non2xx=%d errors=%d\n",
    summary.requests, summary.duration,
    latency:percentile(50), latency:percentile(99),
    summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end

-- A 100-byte JSON job.
function job(n)
  local head = string.format('{"n":%d,"pad":"', n)
  return head .. string.rep("x", 100 - #head - 2) .. '"}'
end
