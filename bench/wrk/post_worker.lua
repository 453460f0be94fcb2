-- POST one 100-byte job per request, as a worker identifying itself would.
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
local n = 0
request = function()
  n = n + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json",
    ["X-presque-workerid"] = "bench-worker"}, job(n))
end
