-- Ocypod enqueue: POST /queue/NAME/job with {"input": job}.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"},
    '{"input":' .. job(n) .. '}')
end
