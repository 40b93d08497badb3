// ringbook trading page: exact conversions between the wire's integers (price ticks, quantity
// lots, minimal currency units) and the decimals people read and type. BigInt only: no
// floating-point value ever decides what is sent to the server.
//
// A Unit says "one integer on the wire is num/den of a displayed unit", written with `dec`
// decimals (the fewest that show every value exactly). Parsing a decimal that is not a whole
// number of wire units is an error, never a rounding.
(function (global) {
  'use strict';

  function pow10(n) {
    let r = 1n;
    for (let i = 0; i < n; i++) r *= 10n;
    return r;
  }

  function gcd(a, b) {
    a = a < 0n ? -a : a;
    b = b < 0n ? -b : b;
    while (b !== 0n) {
      const t = a % b;
      a = b;
      b = t;
    }
    return a;
  }

  // Decimals needed to write every multiple of num/den exactly; -1 when they do not terminate.
  function terminatingDecimals(num, den) {
    let d = den / gcd(num, den);
    let twos = 0;
    let fives = 0;
    while (d % 2n === 0n) { d /= 2n; twos++; }
    while (d % 5n === 0n) { d /= 5n; fives++; }
    return d === 1n ? Math.max(twos, fives) : -1;
  }

  // "12.340" → { digits: 12340n, scale: 3 }; null when it is not a plain non-negative decimal.
  function parseDecimal(text) {
    const t = String(text == null ? '' : text).trim();
    const m = /^(\d*)(?:\.(\d*))?$/.exec(t);
    if (!m || (m[1] === '' && (m[2] === undefined || m[2] === ''))) return null;
    const frac = m[2] || '';
    return { digits: BigInt((m[1] || '0') + frac), scale: frac.length };
  }

  function group(intDigits) {
    return intDigits.replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  }

  // v / 10^dec as a decimal string (exact), optionally with thousands separators.
  function formatScaled(v, dec, grouped) {
    const neg = v < 0n;
    let s = (neg ? -v : v).toString();
    let int = s;
    let frac = '';
    if (dec > 0) {
      s = s.padStart(dec + 1, '0');
      int = s.slice(0, s.length - dec);
      frac = s.slice(s.length - dec);
    }
    if (grouped) int = group(int);
    return (neg ? '-' : '') + int + (dec > 0 ? '.' + frac : '');
  }

  class Unit {
    constructor(num, den, label) {
      this.num = BigInt(num);
      this.den = BigInt(den);
      this.dec = terminatingDecimals(this.num, this.den);
      if (this.dec < 0) throw new Error('no exact decimal for ' + num + '/' + den);
      this.label = label;
    }

    // Wire integer → decimal string (exact).
    format(units, grouped) {
      const v = (BigInt(units) * this.num * pow10(this.dec)) / this.den;
      return formatScaled(v, this.dec, grouped === true);
    }

    // Decimal string → { ok, units } or { ok: false, error }.
    parse(text) {
      const d = parseDecimal(text);
      if (!d) return { ok: false, error: 'not a number' };
      const top = d.digits * this.den;
      const bottom = pow10(d.scale) * this.num;
      if (top % bottom !== 0n) {
        return { ok: false, error: 'not a multiple of ' + this.format(1n, true) };
      }
      return { ok: true, units: top / bottom };
    }

    // The displayed step: one wire unit.
    step() {
      return this.format(1n);
    }
  }

  // The units of a symbol as GET /api/v1/symbols describes it.
  //   price: ticks per lot → quote currency per whole base unit (per lot when that has no exact
  //          decimal); qty: lots → base currency; quote: minimal units → quote currency.
  function symbolUnits(s) {
    const tick = BigInt(s.tick_size);
    const lot = BigInt(s.lot_size);
    const bs = Number(s.base_scale);
    const qs = Number(s.quote_scale);
    let price;
    const perBaseNum = tick * pow10(bs);
    const perBaseDen = lot * pow10(qs);
    if (terminatingDecimals(perBaseNum, perBaseDen) >= 0) {
      price = new Unit(perBaseNum, perBaseDen, s.quote + ' per ' + s.base);
    } else {
      const qty = new Unit(lot, pow10(bs), s.base);
      price = new Unit(tick, pow10(qs), s.quote + ' per lot of ' + qty.format(1n) + ' ' + s.base);
    }
    return {
      price: price,
      qty: new Unit(lot, pow10(bs), s.base),
      quote: new Unit(1n, pow10(qs), s.quote),
      // Quote minimal units of a trade: price × qty × tick size.
      notional: function (priceTicks, qtyLots) {
        return BigInt(priceTicks) * BigInt(qtyLots) * tick;
      },
    };
  }

  // JSON with every integer as a BigInt (exact even above 2^53: client order ids are wall-clock
  // nanoseconds). Uses the reviver's source text where the browser has it.
  function parseJson(text) {
    let sourceSeen = false;
    const v = JSON.parse(text, function (key, value, ctx) {
      if (typeof value === 'number') {
        if (ctx && typeof ctx.source === 'string') {
          sourceSeen = true;
          if (/^-?\d+$/.test(ctx.source)) return BigInt(ctx.source);
          return value;
        }
        if (Number.isInteger(value)) return BigInt(value);
      }
      return value;
    });
    if (!sourceSeen && /\d{16,}/.test(text)) {
      // No source text access: quote long integers before parsing, then read them back.
      const quoted = text.replace(/([:\[,]\s*)(-?\d{16,})(?=\s*[,\]\}])/g, '$1"\\u0000$2"');
      return JSON.parse(quoted, function (key, value) {
        if (typeof value === 'string' && value.charCodeAt(0) === 0) return BigInt(value.slice(1));
        if (typeof value === 'number' && Number.isInteger(value)) return BigInt(value);
        return value;
      });
    }
    return v;
  }

  // JSON text for a request body: BigInts as bare integers, undefined fields left out.
  function toJson(obj) {
    return JSON.stringify(obj, function (key, value) {
      return typeof value === 'bigint' ? '\u0000' + value.toString() : value;
    }).replace(/"\\u0000(-?\d+)"/g, '$1');
  }

  // Client order ids: wall-clock nanoseconds, strictly increasing within the page (the
  // convention `ringbook loadgen` and the bots follow, so they may share an account in turn).
  let lastCoid = 0n;
  function nextClientOrderId() {
    let c = BigInt(Date.now()) * 1000000n;
    if (c <= lastCoid) c = lastCoid + 1n;
    lastCoid = c;
    return c;
  }

  global.RBNum = {
    pow10: pow10,
    gcd: gcd,
    terminatingDecimals: terminatingDecimals,
    parseDecimal: parseDecimal,
    formatScaled: formatScaled,
    Unit: Unit,
    symbolUnits: symbolUnits,
    parseJson: parseJson,
    toJson: toJson,
    nextClientOrderId: nextClientOrderId,
  };
})(window);
