r"""The cycle-level model of the ShiftCNN accelerator and its schedule (SPEC §7).

Architecture
------------
The paper's design (Gudovskiy & Rigazio 2017, Fig. 2-3, Algorithm 2), made parametric by
:class:`shiftsim.hardware.Hardware`::

               +---------------- DRAM port: dram_bytes_per_cycle -----------------+
               |  input rows        weight indices (N*B bits/weight)    outputs ^  |
               v                    v                                           |  |
        +--------------+     +---------------+                          +---------------+
        | input buffer |     | weight buffer |                          | output buffer |
        | (line buffer |     | (all weights, |                          | (2 tiles of A |
        |  of rows)    |     |  or 2 tiles)  |                          |  acc_bits)    |
        +------+-------+     +-------+-------+                          +-------^-------+
               | shift_width values/cycle    | index per (co, c), broadcast     |
        +------v-------+             |                                        |
        | shift unit   | ±(x<<f)>>s, s = 0..S                                 |
        +------+-------+             |                                        |
        +------v-------+     +-------v------------------------------------+   |
        | shift buffer |---->| A = acc_units accumulation units, each:    |---+
        | P-1 words per|     |  tree_width selectors (P-1 : 1 multiplexer |
        | input of the |     |  per channel) -> adder tree -> partial sum |
        | tile window  |     |  -> accumulator register (acc_bits)        |
        +--------------+     +--------------------------------------------+

Schedule (output-stationary, Algorithm 2)
-----------------------------------------
The weights of a layer are either all resident in the weight buffer, or cut into *weight
tiles* of ``Ct`` output channels (the largest multiple of ``A`` with room for two tiles: one
in use, one loading). Per batch element, each tile is one *sweep* over the image: its
``Ct*Ho*Wo`` outputs are taken in the order ``o = (oh*Wo + ow)*Ct + co`` (positions in raster
order, output channels fastest) and cut into *chunks* of ``A = acc_units`` consecutive
outputs, one output per accumulation unit (the last chunk of a sweep may be shorter: ``L_k``
outputs). As ``Ct`` is a multiple of ``A``, only the last tile's last chunk is short, and the
chunk count per element stays ``ceil(Co*Ho*Wo / A)``::

    for b in batch:                              # batch elements one after the other
      for weight tile (sweep):                   # one tile when the weights fit
        for chunk k of the sweep:
          for n in 1..N:  for kh:  for kw:       # Algorithm 2 order (N = 1 for MAC, log)
            for channel block cb in 0 .. ceil(Cg / T) - 1:      # T = tree_width
              one cycle: every unit selects T channels' shifted words (by its weight
                         indices), its adder tree sums them into the partial sum;
                         at the last block: acc = OVERFLOW(acc + partial)   (SPEC §5.1)
          the L_k results go to the output buffer, then to DRAM

The partial sum spans the channel blocks, so the register sees exactly SPEC §5.1's updates
(one per n, kh, kw), WRAP and SAT alike.

The log datapath (SPEC §5.2) cannot use an adder tree: every term is merged into its
register (and wrapped or saturated, or merged by the log adder ``max + correction``, which is
not associative) before the next one, in the order c, kh, kw. Its ``A*T`` lanes (the same
budget as ``A`` trees of ``T`` inputs: ``A*T`` exponent adders) are therefore ``A*T``
independent *serial* accumulators, each owning one output and taking one term per cycle. A
chunk is ``A*T`` outputs (``A`` is read as ``A*T`` everywhere below: chunks, weight tiles,
output buffer), and the inner loops become::

          for c in 0 .. Cg-1:  for kh:  for kw:          # SPEC §5.2 order, one term per cycle
              one cycle: every lane reads its input code and weight code, adds the exponents
                         (when both are nonzero) and merges the term into its register(s):
                         linear: acc = OVF(acc +- floor(2^(p/k + F)))  (odd base-sqrt2 terms:
                         acc_odd, or the shift-add constant);  log: the log adder
          output stage (overlapped, no cycle): split mode's acc + floor(acc_odd * c), or the
                         log -> linear conversions and bias + lin(S+) - lin(S-)

Memory. Only *tapped* input rows and columns (those some kernel tap of some output reads;
padding is never stored or read) move. Chunk ``k`` reads the window ``rows [r0, r1] x cols
[c0, c1]``, with ``oh0, ow0`` / ``oh1, ow1`` the positions of its first and last output::

    r0 = max(oh0*sh - ph, 0)           r1 = min(oh1*sh - ph + (Kh-1)*dh, H-1)
    c0 = max(ow0*sw - pw, 0)           c1 = min(ow1*sw - pw + (Kw-1)*dw, W-1)   if oh0 == oh1
    c0, c1 = 0, W-1                                                          otherwise

- *Input buffer*. Line buffer: a sweep loads each tapped row once, when a chunk first needs
  it (``new_rows_k`` = tapped rows in ``[max(r0, last row loaded + 1), r1]``), all ``C``
  channels and ``W`` columns of ``act_bits``; rows above ``r0`` are dropped, so each sweep
  loads the rows again. With several weight tiles and room for two elements' tapped rows, the
  rows instead stay resident: loaded once per element, at its first chunk.
- *Shift buffer*: the shift unit shifts every tapped window position not in the previous
  chunk's window (``new_box_k = |window_k| - |window_k ∩ window_(k-1)|`` tapped positions,
  times ``C`` channels) into ``P-1 = 2(S+1)`` words of ``word_bits = act_bits + f (+1 if
  unsigned)``; positions that leave the window are dropped (and shifted again if a later
  window needs them: ``shift_unit_inputs`` counts this real work, ``shift_ops`` and
  ``negations`` the datapath's ``B*C*H*W*S`` and ``*(S+1)``). The MAC and log datapaths read
  the input buffer directly.
- *Weight buffer*: resident weights (``Co*Cg*Kh*Kw`` of ``N*B`` bits) are loaded once before
  the first chunk of the batch; a weight tile's ``Ct`` filters are loaded by its sweep's first
  chunk (so once per element).
- *Output buffer*: each chunk's ``L_k`` results (``acc_bits``) are written once, read once.

A buffer too small for this schedule is a ``ValueError`` naming it and the bytes it needs
(input: ``rows_k + new_rows_(k+1)`` tapped rows in the line regime; shift:
``(box_k + new_box_(k+1))*C*(P-1)`` words; weight: two tiles of ``A`` filters, or all weights;
output: ``2*min(A, Co*Ho*Wo)`` results). Growing any buffer never increases DRAM traffic:
a bigger weight buffer means fewer, larger tiles (each sweep reloads the tapped rows unless
they are resident; the weights are read once per element, or once per batch when resident),
a bigger input buffer can only make the rows resident.

Timing. Chunk ``k`` needs ``prep_k`` cycles of DMA then shift unit, then ``steps`` compute
cycles; its results leave in ``store_k`` cycles::

    steps   = N * Kh * Kw * ceil(Cg / T)           (shift; MAC with N = 1)
    steps   = Cg * Kh * Kw                          (log: one term per cycle and lane)
    prep_k  = ceil((ceil(in_bits_k / 8) + ceil(w_bits_k / 8)) / dram_bytes_per_cycle)
              + ceil(C * new_box_k / shift_width)            (shift datapath only)
    store_k = ceil(ceil(L_k * acc_bits / 8) / dram_bytes_per_cycle)

    compute_cycles = B * ceil(Co*Ho*Wo / A) * steps   # = B*ceil(Co*Ho*Wo/A)*N*Kh*Kw*ceil(Cg/T)
                   = B * ceil(Co*Ho*Wo / (A*T)) * Cg*Kh*Kw            (log datapath)

    pipelined (double-buffered: chunk k+1 is prepared and chunk k-1 stored while k computes):
      cycles = prep_0 + Σ_k max(steps, prep_(k+1) + store_(k-1)) + store_last
    not pipelined:
      cycles = Σ_k (prep_k + steps + store_k)

    stall_cycles = cycles - compute_cycles     (adders idle, waiting for memory)

with ``k`` running over all ``B * ceil(Co*Ho*Wo / A)`` chunks (``prep``/``store`` outside the
range are 0), ``in_bits_k = new_rows_k * C * W * act_bits`` and ``w_bits_k`` the weights the
chunk loads.

Buffer traffic (bits)::

    input  write  Σ in_bits_k                                (the DRAM input, before rounding)
           read   shift: Σ C * new_box_k * act_bits (the shift unit);
                  MAC/log: act_bits per term whose input is real (one read per unit/lane)
    shift  write  Σ C * new_box_k * (P-1) * word_bits
           read   word_bits per selection with a nonzero index and a real input
    weight write  Σ w_bits_k
           read   Σ_k min(Ct, L_k) * Kh * Kw * Cg * weight_bits  (one read per distinct co
                  of the chunk per cycle, broadcast to its units)
    output write = read = B * Co * Ho * Wo * acc_bits
    DRAM   read   Σ_k ceil(in_bits_k / 8) + ceil(w_bits_k / 8);  write Σ_k ceil(L_k*acc_bits/8)

Arithmetic counts are the datapath's own (:class:`shiftsim.counts.Counts`), counted by the
stepped units as they compute. Closed forms (``O = B*Co*Ho*Wo`` outputs, ``T = O*Cg*Kh*Kw``
terms; shift: ``S``, ``P`` as in SPEC §3)::

    shift  shift_ops B*C*H*W*S, negations B*C*H*W*(S+1), selects = adds = N*T,
           zero_selects B*Ho*Wo*(zero indices), acc_updates N*O*Kh*Kw
    MAC    multiplies = adds = T, acc_updates O*Kh*Kw
    log    per output o: n+(o), n-(o) = terms with both operands nonzero and a positive /
           negative product, i.e. correlations of the operands' masks:
             n+ = corr(x>0, w>0) + corr(x<0, w<0),  n- = corr(x>0, w<0) + corr(x<0, w>0)
           T_nz = Σ n+ + n-,  R = #{n+ > 0} + #{n- > 0},  L = T_nz - R,
           n_odd = corr(x odd, w even) + corr(x even, w odd) (nonzero, exponents in 1/k)
      linear: exponent_adds = shift_ops = adds = acc_updates = T_nz
              k = 2, split: + O adds, + O acc_updates, O multiplies
              k = 2, shift_add: + n_odd * #{s > 0} shift_ops, + n_odd * (#shifts - 1) adds
      log:    exponent_adds = acc_updates = T_nz, compares = L, shift_ops = L + R,
              log_to_linear = R, adds = L (floor) or 2L (mitchell) + O (+ O with a bias)

``overflows`` are a data outcome (which register update wraps or saturates): the cycle
model counts them as they happen, :func:`shiftsim.estimate` cannot know them (0). Energy is
:func:`shiftsim.energy.energy_pj` of the counts.

The three datapaths share the structure: the shift datapath as above; the MAC datapath has
N = 1 and one multiplier per selector and no shift unit or shift buffer; the log datapath has
``A*T`` serial lanes (exponent adder, shifter, accumulator or log adder each), its packed
codes in the input and weight buffers, and no shift buffer.

:func:`run_cycle` steps this schedule one cycle at a time (a DMA engine, the shift unit and the
adders, each moving real data through the buffers, with presence checks on every read), and
:func:`shiftsim.estimate` evaluates the formulas above; the test suite checks they agree on
every count.
"""

from __future__ import annotations

from shiftsim.cycle.model import ACTIONS, TRACE_DTYPE, UNITS, CycleLimitError, run_cycle

__all__ = ["ACTIONS", "TRACE_DTYPE", "UNITS", "CycleLimitError", "run_cycle"]
