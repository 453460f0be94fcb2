-- Alternate POST and GET on one queue (50/50).
dofile(os.getenv("BENCH_WRK_DIR") .. "/common.lua")
local n = 0
request = function()
  n = n + 1
  if n % 2 == 0 then
    return wrk.format("GET")
  end
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, job(n))
end
