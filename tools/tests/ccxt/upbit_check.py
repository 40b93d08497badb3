"""ccxt's Upbit driver, unchanged, against a ringbook server (tools/tests/upbit_ccxt.rs runs it).

Usage: python upbit_check.py BASE_URL
The server runs the embedded default config: alice and bob have been funded by the test
(alice 10,000,000 KRW; bob 1 BTC and 1,000,000 KRW), carol has nothing. Prints one line per check; exits non-zero
on the first failure (an AssertionError or an unexpected exception with its traceback).
"""
import asyncio
import hashlib
import hmac
import base64
import json
import sys
import time
import uuid
import urllib.parse
import urllib.request
import urllib.error

import ccxt

URL = sys.argv[1]
D = __import__('decimal').Decimal


def ex(name, secret=None, cls=ccxt.upbit):
    e = cls({
        'apiKey': name + '-access-demo',
        'secret': secret if secret is not None else name + '-secret-demo',
        'enableRateLimit': False,
        'timeout': 20000,
    })
    e.urls['api'] = {'public': URL, 'private': URL, 'ws': URL.replace('http://', 'ws://') + '/websocket/v1'}
    return e


def check(what, cond, detail=''):
    if not cond:
        raise AssertionError(f'{what}: {detail}')
    print('ok', what)


def raises(what, fn, exc, name=None):
    try:
        fn()
    except exc as e:
        if name is not None and name not in str(e):
            raise AssertionError(f'{what}: {type(e).__name__} without {name!r}: {e}')
        print('ok', what, '->', type(e).__name__)
        return e
    except Exception as e:  # noqa: BLE001
        raise AssertionError(f'{what}: expected {exc.__name__}, got {type(e).__name__}: {e}')
    raise AssertionError(f'{what}: no error')


alice, bob, carol = ex('alice'), ex('bob'), ex('carol')

# Quotation.
markets = alice.load_markets()
check('load_markets lists BTC/KRW and ETH/KRW', 'BTC/KRW' in markets and 'ETH/KRW' in markets, list(markets))
check('market ids are QUOTE-BASE', markets['BTC/KRW']['id'] == 'KRW-BTC')
for e in (bob, carol):
    e.load_markets()

bal = alice.fetch_balance()
check('fetch_balance: alice has 10,000,000 KRW', bal['KRW']['free'] == 10000000 and bal['KRW']['used'] == 0, bal['KRW'])
check('Remaining-Req header', 'group=' in (alice.last_response_headers or {}).get('Remaining-Req', ''), alice.last_response_headers)
check('fetch_balance: bob has 1 BTC', bob.fetch_balance()['BTC']['free'] == 1.0)
accts = alice.privateGetAccounts()
check('GET /v1/accounts lists only the currencies the user holds', [a['currency'] for a in accts] == ['KRW'], accts)

# bob rests a sell; alice buys part of it: they trade.
sell = bob.create_order('BTC/KRW', 'limit', 'sell', 0.01, 95000000, {'clientOrderId': 'bob-sell-1'})
check('limit sell rests (open)', sell['status'] == 'open' and sell['clientOrderId'] == 'bob-sell-1', sell)
raises('identifier reuse is refused', lambda: bob.create_order('BTC/KRW', 'limit', 'sell', 0.01, 96000000, {'clientOrderId': 'bob-sell-1'}), ccxt.ExchangeError, 'identifier')
bob_bid = bob.create_order('BTC/KRW', 'limit', 'buy', 0.003, 94000000)
ob = alice.fetch_order_book('BTC/KRW')
check('order book: best ask and bid', ob['asks'][0] == [95000000, 0.01] and ob['bids'][0] == [94000000, 0.003], ob)

buy = alice.create_order('BTC/KRW', 'limit', 'buy', 0.004, 95000000)
check('limit buy that crosses is done at once', buy['status'] == 'closed' and buy['filled'] == 0.004, buy)
# 0.004 BTC × 95,000,000 = 380,000 KRW; taker 10 bps = 380 KRW, maker 5 bps = 190 KRW.
check('taker fee paid', float(buy['fee']['cost']) == 380 and buy['fee']['currency'] == 'KRW', buy['fee'])

o = bob.fetch_order(sell['id'])
check('fetch_order: the maker is partly filled', o['status'] == 'open' and o['filled'] == 0.004 and o['remaining'] == 0.006, o)
check('fetch_order: trades and maker fee', len(o['trades']) == 1 and float(o['fee']['cost']) == 190 and o['trades'][0]['price'] == 95000000, o)
o2 = alice.fetch_order(buy['id'])
check('fetch_order: the taker is done', o2['status'] == 'closed' and o2['cost'] == 380000 and o2['average'] == 95000000, o2)

trades = alice.fetch_trades('BTC/KRW')
check('fetch_trades', len(trades) == 1 and trades[0]['price'] == 95000000 and trades[0]['amount'] == 0.004 and trades[0]['side'] == 'buy', trades)
t = alice.fetch_ticker('BTC/KRW')
check('fetch_ticker', t['last'] == 95000000 and t['baseVolume'] == 0.004 and t['quoteVolume'] == 380000, t)
for tf in ('1m', '1d'):
    c = alice.fetch_ohlcv('BTC/KRW', tf)
    check(f'fetch_ohlcv {tf}', len(c) == 1 and c[0][1:] == [95000000, 95000000, 95000000, 95000000, 0.004], c)
c3 = alice.fetch_ohlcv('BTC/KRW', '3m')
check('fetch_ohlcv 3m (grouped 1m candles)', len(c3) == 1 and c3[0][5] == 0.004 and c3[0][0] % 180000 == 0, c3)

# Market sell by volume: alice sells 0.002 into bob's bid.
ms = alice.create_order('BTC/KRW', 'market', 'sell', 0.002)
check('market sell fills against the best bid', ms['status'] == 'closed' and ms['filled'] == 0.002, ms)
check('market sell: its fill at the bid', alice.fetch_order(ms['id'])['average'] == 94000000)


opens = bob.fetch_open_orders('BTC/KRW')
check('fetch_open_orders', sorted(x['remaining'] for x in opens) == [0.001, 0.006], opens)
cancelled = bob.cancel_order(sell['id'])
check('cancel_order', cancelled['status'] == 'canceled' and cancelled['filled'] == 0.004, cancelled)
raises('cancel again: OrderNotFound', lambda: bob.cancel_order(sell['id']), ccxt.OrderNotFound)
closed = alice.fetch_closed_orders('BTC/KRW')
check('fetch_closed_orders (done)', {x['id'] for x in closed} == {buy['id'], ms['id']}, closed)
canceled = bob.fetch_canceled_orders('BTC/KRW')
check('fetch_canceled_orders', [x['id'] for x in canceled] == [sell['id']], canceled)
by_ident = bob.privateGetOrder({'identifier': 'bob-sell-1'})
check('GET /v1/order by identifier', by_ident['uuid'] == sell['id'] and by_ident['state'] == 'cancel' and by_ident['paid_fee'] == '190', by_ident)
raises('fetch_order of an unknown uuid', lambda: bob.fetch_order('00000000-0000-4000-8000-00000000ffff'), ccxt.OrderNotFound)

# More of the API through ccxt's implicit methods (the raw Upbit endpoints).
all_t = alice.publicGetTickerAll({'quote_currencies': 'KRW'})
check('GET /v1/ticker/all', sorted(x['market'] for x in all_t) == ['KRW-BTC', 'KRW-ETH'], all_t)
for period in ('weeks', 'months'):
    cs = alice.publicGetCandlesTimeframe({'timeframe': period, 'market': 'KRW-BTC', 'count': 5})
    check(f'GET /v1/candles/{period}', len(cs) == 1 and cs[0]['trade_price'] == 94000000 and 'first_day_of_period' in cs[0], cs)
cs = alice.publicGetCandlesTimeframeUnit({'timeframe': 'minutes', 'unit': 240, 'market': 'KRW-BTC'})
check('GET /v1/candles/minutes/240', len(cs) == 1 and cs[0]['unit'] == 240, cs)
raises('GET /v1/candles/minutes/2: refused', lambda: alice.publicGetCandlesTimeframeUnit({'timeframe': 'minutes', 'unit': 2, 'market': 'KRW-BTC'}), ccxt.ExchangeError, 'validation_error')
ticks = alice.publicGetTradesTicks({'market': 'KRW-BTC', 'count': 1})
older = alice.publicGetTradesTicks({'market': 'KRW-BTC', 'cursor': ticks[0]['sequential_id']})
check('GET /v1/trades/ticks: newest first, cursor pages older', ticks[0]['sequential_id'] == 2 and [x['sequential_id'] for x in older] == [1], (ticks, older))
raises('GET /v1/trades/ticks: a time of day past 23:59:59', lambda: alice.publicGetTradesTicks({'market': 'KRW-BTC', 'to': '25:00:00'}), ccxt.ExchangeError, 'validation_error')
raises('GET /v1/candles: no 31st of February', lambda: alice.publicGetCandlesTimeframeUnit({'timeframe': 'minutes', 'unit': 1, 'market': 'KRW-BTC', 'to': '2026-02-31T00:00:00'}), ccxt.ExchangeError, 'validation_error')
raises('GET /v1/orders/closed: order_by neither asc nor desc', lambda: alice.privateGetOrdersClosed({'order_by': 'sideways'}), ccxt.ExchangeError, 'validation_error')
raises('GET /v1/orders/open: an unknown state', lambda: alice.privateGetOrdersOpen({'state': 'nope'}), ccxt.ExchangeError, 'validation_error')
raises('GET /v1/withdraws: an unknown state', lambda: alice.privateGetWithdraws({'state': 'nope'}), ccxt.ExchangeError, 'validation_error')
check('GET /v1/withdraws: a known state that none is in', alice.privateGetWithdraws({'state': 'processing'}) == [])
raises('GET /v1/withdraws: an unknown currency', lambda: alice.privateGetWithdraws({'currency': 'DOGE'}), ccxt.ExchangeError, 'currency_not_found')
raises('GET /v1/withdraws: order_by neither asc nor desc', lambda: alice.privateGetWithdraws({'order_by': 'up'}), ccxt.ExchangeError, 'validation_error')
chance = bob.privateGetOrdersChance({'market': 'KRW-BTC'})
check('GET /v1/orders/chance', chance['ask_account']['currency'] == 'BTC' and chance['market']['bid']['price_unit'] == '10000', chance)
check('chance: a bid may be a price order, an ask a market order', 'price' in chance['market']['bid_types'] and 'market' in chance['market']['ask_types'], chance['market'])
uu = bob.privateGetOrdersUuids({'uuids[]': sell['id']})
check('GET /v1/orders/uuids', [x['uuid'] for x in uu] == [sell['id']] and uu[0]['state'] == 'cancel', uu)
extra = [bob.create_order('BTC/KRW', 'limit', 'sell', 0.001, p)['id'] for p in (97000000, 98000000)]
batch = bob.privateDeleteOrdersOpen({'pairs': 'KRW-BTC', 'order_by': 'desc', 'count': 2})
check('DELETE /v1/orders/open: the newest two', batch['success']['count'] == 2 and {x['uuid'] for x in batch['success']['orders']} == set(extra), batch)
wc = bob.privatePostWithdrawsCoin({'currency': 'BTC', 'net_type': 'BTC', 'amount': '0.5', 'address': 'bc1-test'})
check('POST /v1/withdraws/coin', wc['state'] == 'WAITING' and wc['amount'] == '0.5' and wc['currency'] == 'BTC', wc)
check('the withdrawn amount is held', bob.fetch_balance()['BTC']['free'] <= 0.5)
held = bob.fetch_balance()['BTC']['free']
raises('a withdrawal address over 256 bytes', lambda: bob.privatePostWithdrawsCoin({'currency': 'BTC', 'net_type': 'BTC', 'amount': '0.1', 'address': 'x' * 257}), ccxt.ExchangeError, 'validation_error')
check('a refused withdrawal holds nothing', bob.fetch_balance()['BTC']['free'] == held)
raises('a withdrawal finer than the minimal unit', lambda: bob.privatePostWithdrawsCoin({'currency': 'BTC', 'net_type': 'BTC', 'amount': '0.000000001', 'address': 'x'}), ccxt.ExchangeError, 'invalid_amount')
wc2 = bob.privatePostWithdrawsCoin({'currency': 'BTC', 'net_type': 'BTC', 'amount': '0.01', 'address': 'bc1-second'})
desc = [x['uuid'] for x in bob.privateGetWithdraws({'currency': 'BTC'})]
asc = [x['uuid'] for x in bob.privateGetWithdraws({'currency': 'BTC', 'order_by': 'asc'})]
check('GET /v1/withdraws: newest first, or oldest first with order_by=asc',
      desc[:2] == [wc2['uuid'], wc['uuid']] and asc == desc[::-1], (desc, asc))



def rest(path, body, token=None, csv=False):
    """The REST API (JSON) or the seed's CSV endpoints, with urllib."""
    data = body.encode() if csv else json.dumps(body).encode()
    headers = {'Content-Type': 'text/csv' if csv else 'application/json'}
    if token:
        headers['Authorization'] = 'Bearer ' + token
    req = urllib.request.Request(URL + path, data=data, method='POST', headers=headers)
    with urllib.request.urlopen(req, timeout=20) as r:
        text = r.read().decode()
    return text if csv else json.loads(text)


# An order placed another way than this API has no creation time here: null, not 1970.
alice_tok = rest('/api/v1/auth/login', {'login': 'alice', 'password': 'alice-demo'})['token']
csv_reply = rest('/order', '1,0,9000,10,1', alice_tok, csv=True)  # user 1, BTC-KRW, 90,000,000 KRW, 0.001 BTC, buy
csv_id = csv_reply.splitlines()[1].split(',')[0]
by_api = alice.create_order('BTC/KRW', 'limit', 'buy', 0.001, 91000000)
open_now = alice.privateGetOrdersOpen({'market': 'KRW-BTC'})
by_csv = [x for x in open_now if x['price'] == '90000000']
check('an order placed through the CSV API: created_at null', len(by_csv) == 1 and by_csv[0]['created_at'] is None, open_now)
mine = [x for x in open_now if x['uuid'] == by_api['id']]
check('an order placed through this API keeps its created_at', len(mine) == 1 and mine[0]['created_at'], open_now)
rest('/cancel', f'1,{csv_id},0', alice_tok, csv=True)
alice.cancel_order(by_api['id'])

# Errors, as ccxt maps Upbit's.
raises('unknown access key', lambda: ex('nobody').fetch_balance(), ccxt.AuthenticationError, 'invalid_access_key')
raises('bad signature', lambda: ex('alice', secret='not-alice-secret').fetch_balance(), ccxt.AuthenticationError, 'jwt_verification')
fixed = ex('alice')
fixed.uuid = lambda: 'the-same-nonce-' + str(id(fixed))
fixed.fetch_balance()
raises('reused nonce', lambda: fixed.fetch_balance(), ccxt.ExchangeError, 'nonce_used')
raises('insufficient funds', lambda: carol.create_order('BTC/KRW', 'limit', 'buy', 0.01, 95000000), ccxt.InsufficientFunds, 'insufficient_funds_bid')
raises('insufficient funds (ask)', lambda: carol.create_order('BTC/KRW', 'limit', 'sell', 0.01, 95000000), ccxt.InsufficientFunds, 'insufficient_funds_ask')
raises('price off the tick', lambda: alice.create_order('BTC/KRW', 'limit', 'buy', 0.01, 95005000), ccxt.ExchangeError, 'invalid_price_bid')
raises('volume off the lot', lambda: alice.create_order('BTC/KRW', 'limit', 'buy', 0.00015, 95000000), ccxt.ExchangeError, 'invalid_volume_bid')
raises('side missing', lambda: alice.privatePostOrders({'market': 'KRW-BTC', 'side': 'up', 'volume': '1', 'price': '1', 'ord_type': 'limit'}), ccxt.InvalidOrder)


def raw(method, path, query, token_query=None, body=None):
    """A hand-signed request (Python's hmac/hashlib only): the token hashes token_query; with
    body (a dict), a POST of it as JSON, its query the dict url-encoded (as Upbit's own
    examples sign a body)."""
    if body is not None:
        query, data = None, json.dumps(body).encode()
        token_query = urllib.parse.unquote(urllib.parse.urlencode(body))
    else:
        data = None
    def b64(b):
        return base64.urlsafe_b64encode(b).decode().rstrip('=')
    claims = {'access_key': 'alice-access-demo', 'nonce': str(uuid.uuid4())}
    tq = query if token_query is None else token_query
    if tq:
        claims['query_hash'] = hashlib.sha512(tq.encode()).hexdigest()
        claims['query_hash_alg'] = 'SHA512'
    head = b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode()) + '.' + b64(json.dumps(claims).encode())
    sig = b64(hmac.new(b'alice-secret-demo', head.encode(), hashlib.sha256).digest())
    headers = {'Authorization': 'Bearer ' + head + '.' + sig}
    if data is not None:
        headers['Content-Type'] = 'application/json'
    req = urllib.request.Request(URL + path + ('?' + query if query else ''), method=method,
                                 headers=headers, data=data)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


st, body = raw('GET', '/v1/orders/chance', 'market=KRW-BTC')
check('hand-signed request', st == 200 and body['market']['id'] == 'KRW-BTC' and body['bid_fee'] == '0.001', body)
st, body = raw('GET', '/v1/orders/chance', 'market=KRW-ETH', token_query='market=KRW-BTC')
check('query hash of other parameters: invalid_query_payload', st == 401 and body['error']['name'] == 'invalid_query_payload', body)
# Numbers in a JSON body are hashed as the client rendered them (1e-05, not 0.00001): the
# signature holds, and the order is judged on its merits (a volume off the lot).
st, body = raw('POST', '/v1/orders', None, body={'market': 'KRW-BTC', 'side': 'bid', 'volume': 1e-05,
                                                 'price': 95000000, 'ord_type': 'limit'})
check('JSON numbers hashed as written', st == 400 and body['error']['name'] == 'invalid_volume_bid', (st, body))
# A price with too many digits, or out of range either way, is a price error (its side's
# invalid_price_*), not the volume's volume_too_large; a volume's is volume_too_large.
for side, price, volume, name in [('bid', '1e-400', '1', 'invalid_price_bid'),
                                  ('ask', '1e400', '1', 'invalid_price_ask'),
                                  ('bid', '9' * 45, '1', 'invalid_price_bid'),
                                  ('ask', '95000000', '9' * 45, 'volume_too_large'),
                                  # Not positive: the order's own side names it.
                                  ('ask', '0', '1', 'invalid_price_ask'),
                                  ('ask', '95000000', '0', 'invalid_volume_ask'),
                                  ('bid', '95000000', '0', 'invalid_volume_bid')]:
    st, body = raw('POST', '/v1/orders', None, body={'market': 'KRW-BTC', 'side': side, 'volume': volume,
                                                     'price': price, 'ord_type': 'limit'})
    check('refused %s price %s volume %s: %s' % (side, price[:8], volume[:8], name),
          st == 400 and body['error']['name'] == name, (st, body))

# An open bid's `locked` is what the account holds for it: the taker fee rounded up per lot, as
# the risk stage locks (it was rounded over the whole order: 901001 against 901100 held).
def krw_locked():
    st, acc = raw('GET', '/v1/accounts', None)
    return D(next(a['locked'] for a in acc if a['currency'] == 'KRW'))
before = krw_locked()
st, o = raw('POST', '/v1/orders', None, body={'market': 'KRW-BTC', 'side': 'bid', 'volume': '0.01',
                                              'price': '90010000', 'ord_type': 'limit'})
check("an open bid's locked is what the account holds for it",
      st == 201 and D(o['locked']) == D('901100') and D(o['reserved_fee']) == D('1000') and krw_locked() - before == D(o['locked']),
      (st, o))
st, _ = raw('DELETE', '/v1/order', 'uuid=' + o['uuid'])
check('cancel it', st == 200)

# Remaining-Req on a quotation error too (a 400 for a missing parameter had none).
try:
    urllib.request.urlopen(URL + '/v1/ticker', timeout=20)
    raise AssertionError('GET /v1/ticker without markets: no error')
except urllib.error.HTTPError as e:
    check('a quotation 400 carries Remaining-Req (group=market)',
          e.code == 400 and (e.headers.get('Remaining-Req') or '').startswith('group=market;'), dict(e.headers))

# Withdrawals: requested through the Upbit API, released by two operators (/api/v1).
w = alice.withdraw('KRW', 10000, None)
check('withdraw KRW: waiting for approvals', w['info']['state'] == 'WAITING' and w['amount'] == 10000, w)
check('fetch_withdrawal', alice.fetch_withdrawal(w['id'])['info']['state'] == 'WAITING')


def ops_call(login, path, body=None):
    data = json.dumps(body).encode() if body is not None else b''
    req = urllib.request.Request(URL + path, data=data, method='POST', headers={'Content-Type': 'application/json'})
    if login is not None:
        req.add_header('Authorization', 'Bearer ' + login)
    with urllib.request.urlopen(req, timeout=20) as r:
        return json.loads(r.read())


wid = int(w['id'].split('-')[-1], 16)
for op in ('ops1', 'ops2'):
    tok = ops_call(None, '/api/v1/auth/login', {'login': op, 'password': op + '-demo'})['token']
    ops_call(tok, f'/api/v1/withdrawals/{wid}/approve')
wd = alice.fetch_withdrawal(w['id'])['info']
check('withdrawal done after two approvals', wd['state'] == 'DONE', wd)
check('a done withdrawal has its done_at, not before its created_at', wd['done_at'] is not None and wd['done_at'] >= wd['created_at'], wd)
check('a waiting withdrawal has no done_at', w['info']['done_at'] is None, w)
check('fetch_withdrawals', [x['id'] for x in alice.fetch_withdrawals('KRW')] == [w['id']])

# Market buy by quote amount (ord_type=price: the engine's budget buy). Against bob's ask of
# 0.002 at 96,000,000 KRW/BTC (9,600 KRW a lot), 95,000 KRW with the 0.1 % taker fee buys 9
# lots (86,400 + 87 fee); a tenth would cost 96,096.
ask = bob.create_order('BTC/KRW', 'limit', 'sell', 0.002, 96000000)
mb = alice.create_order('BTC/KRW', 'market', 'buy', None, None, {'cost': 95000})
mbo = alice.fetch_order(mb['id'])
check('market buy by cost: the lots the budget pays for, fee included',
      mbo['filled'] == 0.0009 and mbo['cost'] == 86400 and mbo['status'] in ('closed', 'canceled'), mbo)
check('market buy by cost: the ask keeps the rest', bob.fetch_order(ask['id'])['remaining'] == 0.0011)
# As Upbit answers a buy by amount: its amount as `price`, no volume (ccxt reads `price` as the
# order's cost until it has trades).
check('market buy by cost: the reply names the amount as price and no volume',
      mb['info']['price'] == '95000' and mb['info']['volume'] is None and mb['info']['remaining_volume'] is None
      and mbo['info']['price'] == '95000' and mb['type'] == 'market', (mb['info'], mbo['info']))
bob.cancel_order(ask['id'])

# WebSocket through ccxt.pro, when the installed ccxt has it.
try:
    import ccxt.pro as ccxtpro
except ImportError:
    ccxtpro = None
if ccxtpro is None or not hasattr(ccxtpro, 'upbit'):
    print('skip ccxt.pro: not installed')
else:
    async def until(what, fn, bound=20.0):
        deadline = time.monotonic() + bound
        while time.monotonic() < deadline:
            v = fn()
            if v:
                return v
            await asyncio.sleep(0.05)
        raise AssertionError(f'{what}: not within {bound} s')

    async def my_order_as_of_each_event():
        """Raw myOrder messages (aiohttp, which ccxt.pro runs on): each shows the order as it
        stood right after its event (a buy that took three asks at once sent its final state
        in all five), and an order placed through /api is reported too, from the events."""
        import aiohttp
        def b64(b):
            return base64.urlsafe_b64encode(b).decode().rstrip('=')
        claims = {'access_key': 'alice-access-demo', 'nonce': str(uuid.uuid4())}
        head = b64(json.dumps({'alg': 'HS256', 'typ': 'JWT'}).encode()) + '.' + b64(json.dumps(claims).encode())
        tok = head + '.' + b64(hmac.new(b'alice-secret-demo', head.encode(), hashlib.sha256).digest())
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(URL.replace('http://', 'ws://') + '/websocket/v1/private',
                                          headers={'Authorization': 'Bearer ' + tok}) as w:
                await w.send_str('[{"ticket":"t"},{"type":"myOrder"}]')
                async def next_msg(uid):
                    while True:
                        m = await asyncio.wait_for(w.receive(), 20)
                        if m.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                            raise AssertionError(f'myOrder: the connection ended: {m}')
                        v = json.loads(m.data)
                        if v.get('type') == 'myOrder' and v.get('uuid') == uid:
                            return v
                for p in (97000000, 97000000, 97010000):
                    bob.create_order('BTC/KRW', 'limit', 'sell', 0.0001, p)
                st, placed = raw('POST', '/v1/orders', None, body={'market': 'KRW-BTC', 'side': 'bid', 'volume': '0.0003',
                                                                   'price': '97010000', 'ord_type': 'limit'})
                check('a bid that takes three asks', st == 201, (st, placed))
                seen = [await next_msg(placed['uuid']) for _ in range(5)]
                check('myOrder: wait, three trades, done', [m['state'] for m in seen] == ['wait', 'trade', 'trade', 'trade', 'done'], seen)
                check('myOrder: wait shows nothing executed yet',
                      D(seen[0]['executed_volume']) == 0 and D(seen[0]['remaining_volume']) == D('0.0003') and seen[0]['trades_count'] == 0
                      and D(seen[0]['paid_fee']) == 0, seen[0])
                for k, m in enumerate(seen[1:4], 1):
                    check(f'myOrder: trade {k} counts the fills up to it',
                          D(m['executed_volume']) == D('0.0001') * k and D(m['remaining_volume']) == D('0.0001') * (3 - k)
                          and m['trades_count'] == k and D(m['volume']) == D('0.0001') and m['avg_price'] is not None, m)
                fees = [D(m['paid_fee']) for m in seen[1:4]]
                check('myOrder: paid_fee grows with each fill', fees[0] > 0 and fees[0] < fees[1] < fees[2], fees)
                check('myOrder: an average over fills that does not end in decimal is rounded, not null',
                      seen[3]['avg_price'] == '97003333.33333333', seen[3]['avg_price'])
                # An order placed through /api (no record of this API): reported from its events.
                # (Its client order id is above every id this API gave alice, the default rule
                # `increasing`; so alice places no Upbit order after it.)
                login = ops_call(None, '/api/v1/auth/login', {'login': 'alice', 'password': 'alice-demo'})['token']
                o = ops_call(login, '/api/v1/orders', {'symbol': 'BTC-KRW', 'client_order_id': 2**64 - 2, 'side': 'BUY',
                                                      'price': 9000, 'qty': 2})
                uid = '%08x-0000-4000-8000-%012x' % (o['order_id'] >> 32, o['order_id'] & 0xffffffff)
                m = await next_msg(uid)
                check('myOrder: an /api order is reported (wait)', m['state'] == 'wait' and D(m['volume']) == D('0.0002')
                      and m['identifier'] is None and m['order_timestamp'] is None, m)
                req = urllib.request.Request(URL + '/api/v1/orders/' + str(o['order_id']), method='DELETE',
                                             headers={'Authorization': 'Bearer ' + login})
                urllib.request.urlopen(req, timeout=20).read()
                m = await next_msg(uid)
                check('myOrder: its cancel too, what it cannot know null', m['state'] == 'cancel' and m['volume'] is None, m)

    async def ws():
        a = ex('alice', cls=ccxtpro.upbit)
        b = ex('bob', cls=ccxtpro.upbit)
        try:
            await a.load_markets()
            await b.load_markets()
            book = await asyncio.wait_for(a.watch_order_book('BTC/KRW'), 20)
            check('watch_order_book: snapshot', book['bids'][0] == [94000000, 0.001], book['bids'][:3])
            # The trade snapshot (the latest trade) resolves the first watch.
            tr = await asyncio.wait_for(a.watch_trades('BTC/KRW'), 20)
            check('watch_trades: the snapshot is the latest trade (the budget buy)', tr[-1]['price'] == 96000000 and tr[-1]['amount'] == 0.0009, tr[-1])
            await a.create_order('BTC/KRW', 'limit', 'sell', 0.001, 94000000)
            # Messages keep arriving into ccxt's caches; wait (bounded) for the new trade there.
            tr = await until('watch_trades: the new trade', lambda: [x for x in a.trades.get('BTC/KRW', []) if x['amount'] == 0.001])
            check('watch_trades: the new trade', tr[-1]['price'] == 94000000 and tr[-1]['side'] == 'sell', tr[-1])
            book = await until('watch_order_book: the update', lambda: (lambda ob: ob if ob is not None and (not ob['bids'] or ob['bids'][0][0] != 94000000) else None)(a.orderbooks.get('BTC/KRW')))
            check('watch_order_book: the update (bid consumed)', True)
            bals = asyncio.ensure_future(b.watch_balance())
            myo = asyncio.ensure_future(b.watch_orders('BTC/KRW'))
            await asyncio.sleep(0.5)
            placed = await b.create_order('BTC/KRW', 'limit', 'sell', 0.002, 99000000)
            orders = await asyncio.wait_for(myo, 20)
            check('watch_orders (myOrder)', any(x['id'] == placed['id'] and x['status'] == 'open' for x in orders), orders)
            bal = await asyncio.wait_for(bals, 20)
            check('watch_balance (myAsset)', 'BTC' in bal and bal['BTC']['used'] > 0, bal.get('BTC'))
            await my_order_as_of_each_event()
        finally:
            await a.close()
            await b.close()
    asyncio.run(ws())

print('ALL OK')
