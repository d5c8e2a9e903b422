// shiftsim reference RTL -- one ShiftCNN accumulation unit (SPEC 5.1; paper Fig. 3, Alg. 2).
//
// T selectors pick one signed word each from the shift unit's multicast words xs (one group
// of S+1 words per lane's input channel), the adder tree sums them exactly, and the
// accumulator adds the sum once per step:
//
//     acc = bias;  for n in 1..N: for kh: for kw:  acc = OVERFLOW(acc + sum_c term(c,kh,kw,n))
//
// One step per clock: the caller drives n, the lanes' indices and the xs words of the tap.
module shiftcnn_unit #(
    parameter integer XBITS    = 8,
    parameter integer XSIGNED  = 0,
    parameter integer F        = 0,
    parameter integer B        = 4,
    parameter integer N        = 2,
    parameter integer T        = 4,
    parameter integer ACC_BITS = 32,
    parameter integer SAT      = 0,
    // derived: leave at their defaults
    parameter integer XW       = XBITS + (XSIGNED ? 0 : 1),
    parameter integer RW       = XW + F,
    parameter integer TW       = RW + 1,
    parameter integer TREEW    = TW + $clog2(T),
    parameter integer S        = (1 << (B - 1)) - 1 + N - 2,
    parameter integer NBITS    = $clog2(N + 1)
) (
    input  wire                  clk,
    input  wire                  en,
    input  wire                  first,
    input  wire [ACC_BITS-1:0]   bias,
    input  wire [NBITS-1:0]      n,
    input  wire [T*(S+1)*RW-1:0] xs,    // lane i's words in bits [i*(S+1)*RW +: (S+1)*RW]
    input  wire [T*B-1:0]        idx,   // lane i's index in bits [i*B +: B]
    output wire [T*TW-1:0]       term,
    output wire [TREEW-1:0]      tree,
    output wire [ACC_BITS-1:0]   acc,
    output wire                  ovf,
    output wire                  ovf_any
);
    genvar i;
    generate
        for (i = 0; i < T; i = i + 1) begin : g_lane
            shift_select #(.B(B), .N(N), .RW(RW), .S(S), .NBITS(NBITS)) u_sel (
                .xs(xs[i*(S+1)*RW +: (S+1)*RW]), .j(idx[i*B +: B]), .n(n),
                .term(term[i*TW +: TW]));
        end
    endgenerate

    adder_tree #(.T(T), .TW(TW), .TREEW(TREEW)) u_tree (.terms(term), .sum(tree));

    accumulator #(.ACC_BITS(ACC_BITS), .IN_BITS(TREEW), .SAT(SAT)) u_acc (
        .clk(clk), .en(en), .first(first), .bias(bias), .din(tree),
        .acc(acc), .ovf(ovf), .ovf_any(ovf_any));
endmodule
