r"""The cycle-level model of the ShiftCNN accelerator and its schedule (SPEC §7).

Architecture
------------
The paper's design (Gudovskiy & Rigazio 2017, Fig. 2-3, Algorithm 2), made parametric by
:class:`shiftsim.hardware.Hardware`, with a memory hierarchy that reuses data::

        +------------------------ DRAM port: dram_bytes_per_cycle -------------------------+
        | input rows / windows     weights (N*B bits each)                       results ^ |
        v                          v                                                     | |
 +--------------+          +---------------+                                   +---------------+
 | input buffer |          | weight buffer | all weights, two tiles, or two    | output buffer |
 | line buffer  |          |               | chunks' slices                    | 2 chunks of   |
 | or 2 windows |          +-------+-------+                                   | acc_bits      |
 +------+-------+                  | one word per distinct output channel      +-------^-------+
        | shift_width values/cycle | and cycle, multicast to its units               |
 +------v-------+                  |                                                 |
 | shift unit   | +-(x<<f)>>s      |                                                 |
 +------+-------+                  |                                                 |
 +------v-------+   P-1 words of an input, once per cycle, multicast to every unit   |
 | shift buffer |------------------+-----------------------------+                  |
 +--------------+                  |                             |                   |
                 +-----------------v--------------+   +----------v---------------+   |
                 | unit 0: weight register file   |   | unit A-1                 |---+
                 |  (weight_rf_entries weights)   |   |   ...                    |
                 |  T selectors (P-1 : 1 + sign)  |   |                          |
                 |  adder tree -> partial sums    |   |                          |
                 |  (one per step (n, kh, kw)     |   |                          |
                 |  across channel tiles)         |   |                          |
                 |  -> accumulator (acc_bits)     |   |                          |
                 +--------------------------------+   +--------------------------+

The MAC datapath has the same hierarchy with a multiplier per selector and no shift unit or
shift buffer (the units read the input buffer, multicast the same way); the log datapath has
``A*T`` serial lanes (exponent adder, shifter, accumulator or log adder each) reading packed
codes. Every datapath describes its hardware once (:class:`shiftsim.datapath.hardware_desc.
HardwareDesc`: widths, passes, words per input, serial lanes); this package, the analytic
model and the energy table use only that description.

Mapping (:func:`shiftsim.cycle.schedule.plan`)
----------------------------------------------
A layer is cut into *weight tiles* of ``Ct`` output channels (any size, ``Co`` when all
fit) and *input-channel tiles* of ``Tc`` channels per group (``Cg`` when they fit). Per batch
element (batch is one element at a time), each weight tile is one *sweep* over the image: its
``Ct*Ho*Wo`` outputs in the order ``o = (oh*Wo + ow)*Ct + co`` (positions in raster order,
output channels fastest), cut into *chunks* of ``A = acc_units`` consecutive outputs (the log
datapath: ``A*T``), one output per unit; each chunk runs once per input-channel tile (a
*pass*)::

    for b in batch:
      for weight tile t (sweep):
        for chunk k of the sweep:
          for input-channel tile ci:                        # one pass
            for n in 1..N:  for kh:  for kw:                # Algorithm 2 order (N = 1: MAC, log)
              for channel block cb of the tile (T channels):  # one cycle
                every unit selects T channels' words by its weight indices and sums them
                in its adder tree; at the step's last block:
                  ci < last tile:  psum[n, kh, kw] (+)= partial       (partial-sum registers)
                  ci = last tile:  acc = OVERFLOW(acc + psum + partial)     (SPEC §5.1)
          the L_k results go to the output buffer, then to DRAM

so the register sees exactly SPEC §5.1's updates (one per n, kh, kw, over all channels),
WRAP and SAT alike. The log datapath's lanes take one term per cycle in the order c, kh, kw
(its registers simply continue from one channel tile to the next).

Buffers. One input-channel tile (*line mode*): the input buffer is a line buffer: a sweep
loads each tapped row (its tapped columns: padding and unread columns are never stored) of
its groups' channels once, when a chunk's
window first needs it; with several weight tiles and room for two elements' tapped rows, the
rows stay resident for the element (dense layers). The shift unit shifts the window positions
not in the previous chunk's window of the sweep. Several tiles (*box mode*): every pass loads
its window's tapped positions of its channels and shifts them. Chunk ``k``'s window, from the
positions of its first and last outputs::

    r0 = max(oh0*sh - ph, 0)           r1 = min(oh1*sh - ph + (Kh-1)*dh, H-1)
    c0 = max(ow0*sw - pw, 0)           c1 = min(ow1*sw - pw + (Kw-1)*dw, W-1)   if oh0 == oh1
    c0, c1 = 0, W-1                                                          otherwise

Weights: all resident (loaded once per batch) when they fit; else a tile's weights, all its
channel tiles, loaded at the sweep's first chunk (two tiles in the buffer); else each pass
loads its chunk's output channels' slice. Needs (bits; double-buffered where the next pass
loads ahead): input ``(rows_k + new_rows_(k+1)) * chans * tapped_cols * act_bits`` (line) or
``box_g*chans_g + box_(g+1)*chans_(g+1)`` values (box); shift buffer the same positions times
``P-1`` words of ``word_bits``; weights all, ``2*Ct*Cg*Kh*Kw*weight_bits`` or two slices;
output ``2*A*acc_bits``.

Choice. For each ``Ct`` in {``Co``, ``A*2^j``, ``A/2^j``, 1} the largest ``Tc`` in {``Cg``,
``T*2^j``, ``T/2^j``, 1} that fits; ``dataflow="os"`` takes the least DRAM traffic (then the
largest tile); ``"ws"`` the best weight-stationary candidate (``A % Ct == 0``: unit ``u``
computes output channel ``u mod Ct`` at every position of the sweep, its filter in its
register file); ``"auto"`` the lower energy of the two. A bigger buffer only adds candidates:
DRAM traffic never grows. Only a machine that cannot hold the smallest tile (``Ct = Tc = 1``)
is refused, naming the layer, the buffer and the bytes.

Counts
------
Timing. Pass ``g`` needs ``prep_g`` cycles of DMA then shift unit, then ``steps_g`` compute
cycles; a chunk's results leave in ``store`` cycles after its last pass::

    steps_g = N * Kh * Kw * ceil(tcl_g / T)             (shift; MAC with N = 1)
            = tcl_g * Kh * Kw                             (log: one term per cycle and lane)
    prep_g  = ceil((ceil(in_bits_g / 8) + ceil(w_bits_g / 8)) / dram_bytes_per_cycle)
              + ceil(shifted_g / shift_width)             (shift datapath only)
    store_g = ceil(ceil(L_k * acc_bits / 8) / dram_bytes_per_cycle)   (last channel tile)

    compute_cycles = Σ_g steps_g          (untiled: B*ceil(Co*Ho*Wo/A)*N*Kh*Kw*ceil(Cg/T))
    pipelined:      cycles = prep_0 + Σ_g max(steps_g, prep_(g+1) + store_(g-1)) + store_last
    not pipelined:  cycles = Σ_g (prep_g + steps_g + store_g)
    stall_cycles = cycles - compute_cycles

Traffic (bits), with ``reads_g = Σ_(positions p of the chunk) real_taps(p) * groups(p)``
(distinct input words a cycle reads, summed over the pass's taps, per channel)::

    input  write  in_bits_g (the DRAM input);  read: shift unit Σ shifted_g * act_bits, or
                  (MAC, log) reads_g * tcl_g * act_bits: one read per input word and cycle,
                  multicast to every unit at that position
    shift  write  Σ shifted_g * (P-1) * word_bits
           read   reads_g * tcl_g * N * (P-1) * word_bits: an input's P-1 words once per cycle
    weight write  w_bits_g;  read: distinct_co_g * tcl_g*Kh*Kw*N * pass_weight_bits per pass,
                  0 when every unit's register file still holds its slice (one channel tile,
                  the same output channel as in the previous chunk, the slice fits)
    weight RF     read L * tcl*Kh*Kw*N * pass_weight_bits per pass when the slice fits;
                  written as much on the passes that read the weight buffer
    psum          L * N*Kh*Kw * acc_bits written after each channel tile but the last, read
                  before each but the first (shift and MAC)
    output write = read = Σ_k L_k * acc_bits
    DRAM   read   Σ_g ceil(in_bits_g / 8) + ceil(w_bits_g / 8);  write Σ_k ceil(L_k*acc_bits/8)

Bounds: DRAM traffic ≥ the compulsory traffic (each tapped input, weight and output once);
compute cycles ≥ ``ceil(N * MACs / (A*T))`` (:func:`shiftsim.cost.mapping` reports both).

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

``overflows`` are a data outcome: the cycle model counts them as they happen,
:func:`shiftsim.estimate` cannot know them (0). Energy is :func:`shiftsim.energy.energy_pj`
of the counts.

:func:`run_cycle` steps this schedule one cycle at a time (a DMA engine, the shift unit and
the units, moving real data through the buffers with the pass that loaded it, checking it on
every read, and simulating each unit's register file), and :func:`shiftsim.estimate`
evaluates the formulas above; the test suite checks they agree on every count, and checks
both against a brute-force enumeration of every access that shares neither's code.
"""

from __future__ import annotations

from shiftsim.cycle.model import ACTIONS, TRACE_DTYPE, UNITS, CycleLimitError, run_cycle

__all__ = ["ACTIONS", "TRACE_DTYPE", "UNITS", "CycleLimitError", "run_cycle"]
