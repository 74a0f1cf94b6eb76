"""Synthetic Chinese internet-finance complaints: the project's embedded default dataset.

Every complaint is built in two independent random streams, so that the label sets can be
sampled (and checked) without paying for the text:

1. labels: a *scenario* is drawn first. A scenario is anchored on one label, drawn from a
   Zipf-like law over the label popularity ranks, and brings its partners with it: curated
   strong pairs (逾期费用 → 违约金计算, 通讯录爆破 → 暴力催收 …) and looser members of the
   same thematic cluster. Sometimes a second, unrelated scenario joins (people complain about
   several things at once). At most five labels are kept.
2. text: colloquial complaint prose made of an opener, one or two cue sentences per label,
   filler, a demand, and noise (typos, full-width characters, emoji, repeated punctuation).

The task is kept deliberately imperfect. About twenty tail labels are *weak*: their own cue is
often missing or replaced by a vague sentence that also appears in complaints about their
partner head label, while they almost always co-occur with that head label. Every label's cue
is sometimes missing or only hinted at, related problems are mentioned in passing without being
labelled (as annotators do), and label names turn up as hearsay. Text alone therefore cannot
reach a perfect score (a TF-IDF linear model gets about 0.8 micro-F1); label co-occurrence helps
on the tail.

``fmlc synth --n 120000 --seed 0 --out data.jsonl --stats`` writes and describes it.
"""

from __future__ import annotations

import bisect
import itertools
import json
import math
import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fmlc.text import Tokenizer


@dataclass(frozen=True)
class _Spec:
    name: str
    tier: int  # 1 = head … 4 = tail; orders the Zipf ranks
    cues: tuple[str, ...]  # sentences that say the label (slots in braces)
    weak_to: str | None = None  # the head label a weak tail label leans on
    vague: tuple[str, ...] = ()  # weak labels only: sentences that do not tell the label apart


def _l(name: str, tier: int, *cues: str, weak_to: str | None = None, vague: tuple[str, ...] = ()) -> _Spec:
    return _Spec(name, tier, cues, weak_to, vague)


# The taxonomy, by group. Label names are short phrases made of ordinary words that jieba keeps
# whole, and each label's cue sentences use those words, because a zero-shot baseline builds a
# label's vector from the word vectors of its name.
_TABLE: dict[str, list[_Spec]] = {
    "借贷费用": [
        _l("利率争议", 1,
           "借款页面写的日息万分之五，算下来年化利率超过{apr}%，这个利率明显不合理",
           "实际利率远远高于宣传的利率，借{amt}元一年要还{amt3}元",
           "这利息也太高了吧，综合下来年利率有{apr}%，跟高利贷有什么区别",
           "合同上根本没写清楚年化利率，我对他们的利率计算有很大争议",
           "每个月光利息就要{fee}块，利率比银行高出好几倍",
           "借的时候说月利率很低，还的时候发现利息翻了好几倍"),
        _l("砍头息", 1,
           "借{amt}元到手只有{amt2}元，剩下的说是服务费提前扣了，这就是典型的砍头息",
           "放款的时候直接扣了{pct}%的砍头息，还款却要按{amt}元全额还",
           "合同金额写{amt}，实际到账{amt2}，这不是砍头息是什么",
           "钱还没到手就先被砍了一刀，{amt}元借款到账只有{amt2}元",
           "砍头息扣了{fee}元，利息却按照合同全额计算"),
        _l("违约金计算", 2,
           "逾期{days}天就收了{fee}元违约金，违约金的计算方式完全不透明",
           "违约金按借款总额的{pct}%计算，这个计算标准是哪来的",
           "问客服违约金怎么计算的，只说是系统自动算的，解释不清楚",
           "违约金每天按剩余本金的千分之五计算，比利息还高",
           "合同里的违约金条款和实际计算出来的数不一样"),
        _l("逾期费用", 1,
           "只是逾期了{days}天，逾期费用就加了{fee}元",
           "逾期费用一天一个价，利滚利越滚越多",
           "我就晚还了{days}天，逾期罚息加上各种管理费一共收了{fee}块",
           "逾期之后各种费用叠加在一起，涨得比本金还快",
           "因为系统问题晚了一天还款，照样收了逾期费用和罚息"),
        _l("服务费过高", 2,
           "每期除了利息还要交{fee}元服务费，服务费过高根本不合理",
           "所谓的平台服务费、信息服务费加起来占了借款的{pct}%",
           "服务费比利息还高，借款之前根本没有说明",
           "一笔{amt}元的借款收了{fee}元服务费，收费太高了"),
        _l("担保费争议", 4,
           "对这笔担保费我有争议，借款合同里根本没写",
           "每期还款里还有一笔担保费，我根本不知道是哪家担保公司",
           "不交{fee}元担保费就不放款，等于强制收取担保费",
           "担保公司是平台自己的关联公司，担保费就是变相收利息",
           weak_to="砍头息",
           vague=("每个月扣的钱里有一部分说是费用，具体是什么也说不清",
                  "账单上有一项额外的费用，问了也没人解释",
                  "除了本金和利息还多出好几项收费")),
        _l("提前还款违约金", 3,
           "想提前还款结清，结果要收{pct}%的提前还款违约金",
           "提前还款还要付违约金和剩余全部利息，凭什么",
           "我有钱了想提前还清，平台说提前还款要收违约金{fee}元"),
        _l("会员费捆绑", 3,
           "借款必须先开通{fee}元的会员，说是会员才能提高通过率",
           "放款后自动扣了一笔会员费，我从来没同意过开通会员",
           "借款和会员费捆绑在一起，不买会员就显示审核不通过"),
        _l("综合年化超标", 3,
           "算上各种费用后综合年化超过了{apr}%，远远超过国家规定的上限",
           "他们说利率只有百分之十几，但是综合年化成本明显超标",
           "按照监管要求综合年化不能超过36%，这家明显超标了"),
        _l("息费不透明", 2,
           "借款时只展示日利率，息费明细到还款时才看得到",
           "每期还款的息费构成不透明，客服也说不清到底收了哪些费用",
           "借款页面上看不到总息费，签完才知道要还这么多"),
        _l("重复扣款", 2,
           "同一期账单被重复扣款两次，多扣了{fee}元",
           "{date}银行卡被扣了两笔一模一样的还款，重复扣款到现在都没退",
           "我已经主动还款了，系统又重复扣款一次"),
        _l("还款金额错误", 3,
           "APP上的还款金额错误，比合同多算了{fee}元",
           "APP上显示的还款金额和合同对不上，多出来{fee}元",
           "已经全部还清了还显示欠款{fee}元，还款金额计算错误",
           "每期还款金额都不一样，和当初说的完全对不上"),
        _l("手续费争议", 3,
           "对收取的手续费有争议，客服只说是合同约定的",
           "每次借款都要收{fee}元手续费，事先没有明确告知",
           "手续费的收取标准前后不一致，问了也不给解释",
           "说好免手续费，结果每笔都扣了手续费"),
    ],
    "催收": [
        _l("暴力催收", 1,
           "催收人员天天打电话骂人，完全就是暴力催收",
           "催收说要上门找我家人，还威胁要让我身败名裂，这就是暴力催收",
           "遭遇暴力催收，精神压力非常大，已经影响正常生活",
           "催收的人说话极其恶劣，各种威胁，严重的暴力催收",
           "我只逾期了几天，催收就开始各种骚扰和威胁"),
        _l("通讯录爆破", 1,
           "催收把我通讯录里的人全打了一遍，同事领导都接到了电话",
           "通讯录被爆破了，亲戚朋友都知道我欠钱了",
           "他们拿到我的通讯录以后挨个打电话发短信，说我是老赖",
           "我的通讯录好友一个个被打电话，连很久不联系的同学都收到了"),
        _l("骚扰第三方", 2,
           "催收打电话骚扰我的紧急联系人和家人，他们又不是借款人",
           "连我爸妈和单位前台都被骚扰，第三方凭什么要承受这些",
           "我的朋友被催收骚扰得没办法，只能把我拉黑了"),
        _l("冒充公检法催收", 3,
           "催收冒充法院的工作人员，说已经立案要来抓人",
           "打电话的自称是公安局经侦的，说不还钱就按诈骗处理，冒充公检法吓唬人",
           "有人冒充检察院打电话催收，说要冻结我名下所有财产"),
        _l("恐吓威胁", 2,
           "催收恐吓说知道我家住哪里，让我小心点",
           "威胁说要找人去我单位闹，还要把我照片发到网上",
           "对方恐吓威胁说今天不还钱后果自负"),
        _l("侮辱谩骂", 2,
           "催收电话里满嘴脏话，侮辱谩骂我的家人",
           "被催收人员辱骂，骂得特别难听，根本不把人当人",
           "催收短信里全是侮辱谩骂的话，还问候我全家"),
        _l("频繁来电", 2,
           "一天接到{n}多个催收电话，班都没法上",
           "从早上八点到晚上十一点频繁来电，号码每次都不一样",
           "{phone}这个号码一天打了{n}次，频繁来电严重影响生活"),
        _l("上门催收", 3,
           "催收人员直接上门，在我家门口堵人",
           "说已经安排外访人员上门催收，邻居都看见了",
           "有两个人上门催收，在我公司楼下等了一下午"),
        _l("伪造律师函", 4,
           "收到一封所谓的律师函，上面的律所根本查不到",
           "他们伪造律师函说要起诉我，盖的章一看就是假的",
           weak_to="暴力催收",
           vague=("发来一张盖着章的文件说要起诉我，看着就像假的",
                  "对方说已经走法律程序了，让我等着收传票")),
        _l("合成图片侮辱", 4,
           "催收把我的照片合成图片侮辱我，还发到群里",
           "用我的身份证照片合成了很难看的图片，侮辱我的人格",
           weak_to="通讯录爆破",
           vague=("还做了一些很难看的图发给我的朋友",
                  "我的照片被人拿去乱发，不知道他们还要干什么")),
        _l("催收短信轰炸", 3,
           "每天收到几十条催收短信，短信内容带着威胁",
           "手机被催收短信轰炸，{phone}这个号一直在发",
           "半夜还在发催收短信，一晚上几十条"),
        _l("第三方催收", 4,
           "平台把我的账单转给了第三方催收公司，态度一个比一个差",
           "打电话来的是第三方催收，问平台平台说不知情",
           weak_to="暴力催收",
           vague=("打电话的人说自己是第三方的，不是平台的员工",
                  "每次来电的人都不一样，也不说是哪个公司的")),
    ],
    "征信": [
        _l("征信异常", 1,
           "查征信发现多了一条{app}的记录，征信异常影响了我的房贷审批",
           "我的征信出现异常，银行说有逾期记录",
           "从来没有逾期过，征信上却显示异常",
           "去银行办贷款才发现征信有问题，被拒了"),
        _l("征信未消除", 3,
           "逾期记录到现在都未消除",
           "已经结清{months}个月了，征信上的逾期记录还没消除",
           "还清之后申请消除不良记录，平台一直拖着不处理",
           "说好结清后更新征信，到现在征信还是没消除"),
        _l("未经授权查询征信", 3,
           "未经授权就查询了我的征信，这是违规的",
           "我根本没有授权，他们却查询了我的征信报告",
           "征信报告上显示{app}做过贷后管理查询，我从来没授权过",
           "只是点开看了一下额度，就被查询了征信"),
        _l("逾期记录错误", 2,
           "逾期记录错误，我有还款凭证可以证明",
           "我是按时还款的，却被上报了逾期记录",
           "逾期记录是他们系统出错造成的，要求更正",
           "还款日当天就还了，征信上还是多了一条逾期记录"),
        _l("征信修复诈骗", 4,
           "有人打电话说花钱就能修复征信，交了{fee}元之后就联系不上了",
           "所谓的征信修复公司收了我{fee}块钱，什么也没修复，就是诈骗"),
        _l("大数据黑名单", 3,
           "现在去哪借款都秒拒，说我上了大数据黑名单",
           "客服说我的大数据花了，进了黑名单，可我从没逾期过"),
        _l("征信报告错误", 3,
           "征信报告上的借款金额和实际不符，报告有错误",
           "征信报告里有一笔我从来没借过的贷款",
           "申请更正征信报告上的错误信息，一直没人理"),
        _l("担保记录异常", 4,
           "征信上的担保记录异常，我要求核实",
           "征信上多了一条担保记录，我从来没给人做过担保",
           "报告上显示我为别人的借款提供担保，这条担保记录是哪来的",
           weak_to="征信异常",
           vague=("报告里有一条我看不懂的记录",
                  "征信上多出来一条不认识的信息")),
        _l("征信上报延迟", 4,
           "结清之后平台迟迟不上报，征信上还显示未结清",
           "平台的征信上报延迟了好几个月，影响我买房",
           weak_to="征信异常",
           vague=("征信上的状态一直没更新",
                  "银行那边看到的信息跟实际情况不一样")),
        _l("结清证明难开", 3,
           "结清证明难开得很，跑了好几趟也没拿到",
           "想开一份结清证明，客服一直推脱说开不了",
           "结清证明申请了{n}次都没给，买房急着用",
           "要结清证明就让我等，等了一个月也没有"),
        _l("多头借贷记录", 4,
           "征信上的查询记录太多，银行说我多头借贷",
           "平台借一次就查一次征信，弄得我全是多头借贷记录",
           weak_to="征信异常",
           vague=("被好几家平台查过，记录一大堆",
                  "银行说我的记录太乱了，不给批")),
    ],
    "支付/提现": [
        _l("提现到账问题", 1,
           "提现到账一直有问题，钱卡在中间",
           "提现{amt}元显示成功，但是一直没到账",
           "提现{days}天了钱还没到账，客服说在处理中",
           "提现到账的金额比申请的少了{fee}元",
           "申请提现以后钱一直不到账，显示银行处理中"),
        _l("提现手续费", 3,
           "提现要收{pct}%的手续费，之前根本没说过",
           "提现{amt}元被扣了{fee}元提现手续费"),
        _l("提现失败", 2,
           "每次提现都显示失败，钱根本取不出来",
           "提现失败以后余额也不见了",
           "连续{n}次提现失败，提示系统繁忙"),
        _l("充值未到账", 3,
           "充值{amt}元一直没到账，账户余额没变",
           "银行卡扣了钱，充值却显示未到账"),
        _l("支付失败扣款", 3,
           "页面显示支付失败，但是银行卡已经扣款了",
           "支付失败了好几次，结果每次都扣了款"),
        _l("自动扣款", 2,
           "没经过我同意就从银行卡自动扣款",
           "还没到还款日就被自动扣款了{amt}元",
           "绑定的银行卡被自动扣款，连个提醒都没有"),
        _l("免密支付争议", 3,
           "对这几笔免密支付有争议，不是我本人操作的",
           "我不记得开通过免密支付，钱就被扣走了",
           "免密支付是默认开通的，扣款前没有任何确认"),
        _l("余额被冻结", 4,
           "钱包余额被冻结了，说是风控原因，{amt}元取不出来",
           "余额被冻结后提示要我补充资料，补了也没解冻",
           weak_to="账户冻结",
           vague=("里面的钱现在动不了",
                  "说是风控原因，要等审核")),
        _l("退款纠纷", 1,
           "因为退款的事和平台有纠纷，一直协商不下来",
           "申请退款{days}天了一直没有退",
           "商家都同意退款了，平台却迟迟不退",
           "退款金额少了{fee}元，问客服说是扣了手续费",
           "退款被驳回好几次，理由一次一个样"),
        _l("扣款未入账", 3,
           "银行卡扣款了，还款却一直未入账",
           "还款已经扣款成功，平台却显示没入账，还算我逾期",
           "银行流水显示扣款了，平台账单里没有入账记录"),
        _l("银行卡解绑困难", 3,
           "银行卡解绑困难，说要先注销账户",
           "想解绑银行卡，系统说有未结清业务不让解绑",
           "银行卡解绑的入口根本找不到，客服也不给解绑"),
    ],
    "理财/投资": [
        _l("理财产品亏损", 2,
           "买的理财产品亏了{pct}%，当时说是稳健型产品",
           "理财产品到期亏损了{amt}元，没人提示过风险",
           "本来想理财赚点利息，结果亏损了一大半"),
        _l("承诺保本", 3,
           "业务员口头承诺保本保收益，结果亏损了",
           "当时说这个产品承诺保本，现在本金都拿不回来"),
        _l("收益不符宣传", 2,
           "宣传年化收益{pct}%，实际收益连一半都不到",
           "实际到手的收益和宣传的完全不符",
           "收益说得天花乱坠，到期一算还不如存银行"),
        _l("赎回困难", 2,
           "到期以后赎回不了，一直显示处理中",
           "申请赎回{days}天了钱还没回来，赎回困难",
           "赎回按钮是灰的，根本点不了"),
        _l("资金池风险", 4,
           "平台的资金池风险很大，监管早就提示过",
           "怀疑平台在搞资金池，拿新投资人的钱还老投资人",
           "资金没有银行存管，全在平台的资金池里",
           weak_to="平台跑路",
           vague=("钱到底去了哪里没有人说得清",
                  "平台说钱很安全，但是什么证明都拿不出来")),
        _l("虚假标的", 4,
           "投资的借款项目是虚构的，借款人信息都是假的",
           "平台上的标的全是虚假标的，借款企业根本不存在",
           weak_to="非法集资",
           vague=("项目介绍写得很好，查了一下对不上",
                  "投的那些项目现在一个都查不到")),
        _l("私募违规", 4,
           "私募产品卖给我这种普通人，根本没做合格投资者认定",
           "私募基金公开宣传推销，明显违规"),
        _l("高风险产品误导", 3,
           "把高风险产品当成低风险产品推荐给我，风险评估是业务员代填的",
           "我是保守型投资者，却被误导买了高风险产品"),
        _l("本金兑付延期", 2,
           "理财到期后本金一直延期兑付，说要分{months}期慢慢还",
           "本金兑付延期了{days}天，每次都说下周到账",
           "兑付日到了本金没回来，公告说延期兑付"),
        _l("非法集资", 2,
           "平台以高息为诱饵吸收公众资金，涉嫌非法集资",
           "拉人头投资返利，明显就是非法集资",
           "已经有很多人报案了，这就是非法集资"),
        _l("虚拟币投资骗局", 3,
           "被拉进群里投资虚拟币，充值{amt}元以后无法提币",
           "所谓的虚拟币交易平台是骗局，币价都是后台控制的"),
        _l("荐股诈骗", 3,
           "群里的老师天天荐股，交了会员费以后买的股票全跌了",
           "荐股的人让我交{amt}元跟单，是诈骗"),
    ],
    "保险": [
        _l("强制搭售保险", 1,
           "借款的时候被强制搭售保险，不买保险就不放款",
           "每期还款里都有一笔保险费，是借款时强制搭售的",
           "借{amt}元被强制搭售了{fee}元的保险",
           "根本没问我要不要保险，直接就搭售上了"),
        _l("理赔困难", 2,
           "理赔困难，一拖再拖",
           "出险后申请理赔，材料交了{n}次都没有赔",
           "理赔流程特别复杂，拖了{days}天也没结果",
           "理赔的时候各种刁难，要这个证明那个证明"),
        _l("保险拒赔", 2,
           "买的保险出了事，保险方直接拒赔",
           "保险公司找各种理由拒赔",
           "明明符合条款，保险公司还是拒赔了"),
        _l("退保纠纷", 2,
           "要求退保，平台说只能退一小部分保费",
           "申请退保被拒绝，说已经过了犹豫期",
           "退保后钱一直没退回来",
           "为了退保的事跟他们起了纠纷"),
        _l("保费误导", 3,
           "保费的说法完全是误导，跟合同对不上",
           "说保费每月只要几块钱，实际一年扣了{fee}元",
           "销售说保费可以全额返还，根本就不是这样"),
        _l("捆绑意外险", 4,
           "借款时还多了一份意外险，我根本不需要什么意外险",
           "捆绑了一份意外险，每月扣{fee}元",
           weak_to="强制搭售保险",
           vague=("账单里有一项我不认识的费用",
                  "每期多扣了一点钱，名目写得很含糊")),
        _l("保单未告知", 4,
           "保险的内容未告知，连保单都没见过",
           "到现在都没给我保单，也没有告知保险的具体内容",
           "买了什么保险没有告知，我连保单都没见过",
           weak_to="强制搭售保险",
           vague=("具体的条款我一直没看到",
                  "问他们要材料，说以后会发")),
        _l("自动续保", 3,
           "保险到期以后被自动续保，又扣了一年的保费",
           "我从来没有同意自动续保，钱却被扣了"),
        _l("保险销售误导", 3,
           "销售说这是存款，结果买成了分红保险",
           "保险销售误导我说随时可以取，现在退保要亏一大半"),
        _l("健康告知争议", 4,
           "对健康告知有争议，当时根本没有询问",
           "理赔时说我没有做健康告知，可是投保时根本没人问",
           "健康告知是销售帮我勾的，现在以此为由不赔"),
        _l("退保手续费", 4,
           "退保要扣{pct}%的手续费，太离谱了",
           "退保手续费收了{fee}元，合同上没写"),
    ],
    "信用卡": [
        _l("信用卡分期费率", 2,
           "信用卡分期说是零利息，实际手续费折算年化将近{apr}%",
           "信用卡分期费率宣传的和实际不一样",
           "办分期的时候只说每期费率很低，算下来很高"),
        _l("信用卡盗刷", 2,
           "发生了信用卡盗刷，银行却让我自己承担",
           "信用卡在外地被盗刷了{amt}元，我人一直在本地",
           "半夜收到短信信用卡被盗刷，卡一直在我身上"),
        _l("年费争议", 2,
           "对年费有争议，银行不肯退",
           "说好的免年费，结果扣了{fee}元年费",
           "办卡时没说有年费，现在要收年费"),
        _l("额度被降", 3,
           "信用卡额度被降了，没有任何通知",
           "一直按时还款，额度却被降到{amt}元"),
        _l("信用卡停卡", 3,
           "银行无故把信用卡停卡，影响正常使用",
           "信用卡突然停卡，打客服说是风控"),
        _l("最低还款陷阱", 4,
           "只还了最低还款额，利息却按全额计算，没人提醒过",
           "最低还款以后利息滚得很快，这就是个陷阱"),
        _l("账单分期争议", 3,
           "账单分期有争议，我从来没申请过分期",
           "没有经过我确认就把账单办理了分期",
           "账单分期的手续费和当初说的不一样"),
        _l("信用卡套现", 4,
           "有人推销信用卡套现，被骗了{fee}元",
           "被中介忽悠去做信用卡套现，卡被封了"),
        _l("信用卡逾期", 2,
           "信用卡逾期了{days}天，银行的催收电话不断",
           "信用卡逾期后银行说要起诉我",
           "手头紧信用卡逾期了，罚息和违约金一直在涨"),
        _l("积分兑换纠纷", 4,
           "积分兑换出了纠纷，客服不处理",
           "积分兑换的礼品一直没有发货",
           "积分突然清零了，兑换不了东西"),
        _l("代理办卡收费", 4,
           "代理办卡收费{fee}元，说好的办不下来全退，现在不退了",
           "找代理办卡交了{fee}元，卡没有办下来",
           "中介说包办信用卡，收了费就不见了"),
    ],
    "个人信息": [
        _l("隐私泄露", 1,
           "我的个人隐私被泄露了，陌生人都知道我的借款信息",
           "隐私泄露太严重了，身份证号和住址都被人知道了",
           "注册以后个人信息就泄露了，不知道是谁泄露的",
           "我的借款信息被泄露给了我的亲戚朋友"),
        _l("个人信息滥用", 2,
           "平台滥用我的个人信息做营销",
           "拿我的个人信息去申请别的业务，这是滥用"),
        _l("过度索权", 3,
           "APP要求读取通讯录、位置和相册，不给权限就用不了",
           "一个借款软件要那么多权限，过度索权"),
        _l("人脸信息采集", 4,
           "每次都要人脸识别，不知道人脸信息被存到了哪里",
           "借款时采集了我的人脸信息，说是用于验证"),
        _l("身份冒用", 2,
           "有人冒用我的身份在{app}借了{amt}元",
           "我根本没有注册过，却有一笔用我身份借的款",
           "我的身份被冒用，莫名其妙背了一笔债"),
        _l("注销账号困难", 3,
           "注销账号困难，提交申请后石沉大海",
           "想注销账号，根本找不到入口",
           "申请注销账号被拒绝，说有未完成的业务"),
        _l("信息被贩卖", 4,
           "怀疑平台把我的信息卖给了别的贷款公司",
           "我的信息被贩卖了，好多公司都知道我借过钱",
           weak_to="隐私泄露",
           vague=("注册以后就有各种陌生电话打过来",
                  "不知道他们从哪里拿到我的资料的")),
        _l("骚扰电话推销", 2,
           "每天都有推销贷款的骚扰电话",
           "一天接到好几个推销电话，问我要不要借钱"),
        _l("未授权共享信息", 4,
           "未授权他们共享信息，怎么第三方也有我的资料",
           "没经过我同意，就把我的信息共享给了第三方合作机构",
           "我从来没有授权共享信息给他们的合作方",
           weak_to="隐私泄露",
           vague=("协议里写着合作方可以使用我的资料",
                  "别的公司居然也有我的资料")),
        _l("通讯录读取", 4,
           "APP偷偷读取了我的通讯录",
           "安装的时候没说要读取通讯录，后来才知道早就读了",
           weak_to="通讯录爆破",
           vague=("我的联系人他们怎么都知道",
                  "手机里的资料好像都被他们拿走了")),
        _l("短信验证码泄露", 4,
           "我的短信验证码被人骗走，账户被盗",
           "冒充客服让我报验证码，短信验证码泄露后钱被转走了"),
    ],
    "营销": [
        _l("虚假宣传", 1,
           "宣传的时候说零利息、低门槛，实际完全不是这样",
           "广告里说的和实际情况差太多，就是虚假宣传",
           "宣传页面写着最高额度{amt}元，实际只给几百块",
           "说好的秒到账、无抵押，全是虚假宣传"),
        _l("自动续费", 1,
           "会员到期以后自动续费，扣了{fee}元也没提醒",
           "自动续费是默认开通的，取消的入口藏得很深",
           "我早就不用了，每个月还在自动续费扣钱",
           "关闭了自动续费还是被扣了{fee}元"),
        _l("诱导借款", 2,
           "APP不停地推送诱导借款，说额度马上过期",
           "还没还完就诱导我再借一笔",
           "客服打电话诱导我借款，说利息很低"),
        _l("诱导开通会员", 2,
           "说开通会员能提额、优先放款，开了也没用",
           "借款页面诱导开通会员，按钮特别显眼"),
        _l("默认勾选", 3,
           "借款页面默认勾选了各种增值服务",
           "协议默认勾选，根本没注意就同意了"),
        _l("优惠券不兑现", 3,
           "领到的免息优惠券用不了",
           "活动送的优惠券到账后无法使用，不兑现"),
        _l("免息误导", 3,
           "免息的宣传是误导，借了才知道要收费",
           "宣传免息，结果还是收了手续费",
           "说是前{days}天免息，实际从第一天就开始算利息"),
        _l("广告骚扰", 3,
           "广告骚扰太严重，一天好几个推送",
           "每天好几条广告短信，退订了也没用",
           "APP里到处是弹窗广告，关都关不掉"),
        _l("强制授权", 4,
           "不同意所有授权就不能继续借款，这是强制授权",
           "强制要求授权读取各种信息",
           weak_to="过度索权",
           vague=("不点同意就没法往下走",
                  "那些协议一大堆，不同意根本用不了")),
        _l("虚假额度", 3,
           "显示有{amt}元额度，点进去要先付费才能提现，就是虚假额度",
           "额度只能看不能用，虚假额度骗人开会员"),
        _l("邀请返现不兑现", 4,
           "邀请返现不兑现，活动规则随便改",
           "邀请好友的返现一直不到账",
           "说好邀请一个人返现{fee}元，邀请了也不给"),
    ],
    "客服": [
        _l("客服失联", 1,
           "客服电话一直打不通，在线客服也不回复，客服完全失联了",
           "出了问题以后客服就失联了，找不到任何人",
           "客服热线已经停机，客服失联",
           "打了{n}次客服电话都没人接"),
        _l("投诉无回应", 1,
           "多次投诉无回应，没人管",
           "投诉了{n}次都没有任何回应",
           "在APP里提交的投诉一直没有回应",
           "打客服投诉说会有专人联系，一直没人联系我",
           "投诉{days}天了没有人回应"),
        _l("客服态度差", 2,
           "客服态度差，问两句就不耐烦",
           "客服态度很差，说两句就直接挂我电话",
           "客服的态度特别恶劣，一直不耐烦"),
        _l("人工客服难接通", 2,
           "人工客服难接通，机器人又解决不了问题",
           "转人工客服要排队{n}分钟，最后还是没接通",
           "人工客服根本打不进去，一直提示繁忙"),
        _l("推诿扯皮", 2,
           "客服和资金方互相推诿，都说不归他们管",
           "问一次推一次，推诿扯皮就是不解决"),
        _l("处理进度缓慢", 3,
           "处理进度缓慢，催了好几次也没用",
           "说{days}个工作日内处理，到现在还没有结果",
           "处理进度太慢了，一拖就是几个月"),
        _l("承诺未兑现", 3,
           "客服的承诺未兑现，说好的减免没了",
           "客服承诺减免费用，最后又不认账了",
           "之前答应给我退款，承诺的事情一件都没兑现"),
        _l("工单被关闭", 4,
           "问题还没解决工单就被关闭了",
           "提交的工单显示已处理，其实根本没人联系我"),
        _l("客服诱导删帖", 4,
           "客服让我先删帖撤诉再谈解决方案",
           "客服诱导我删掉投诉帖子，说删了才给处理"),
        _l("机器人客服敷衍", 3,
           "只有机器人客服，回复都是模板，完全是敷衍",
           "问什么机器人客服都回答同一句话"),
        _l("回访骚扰", 4,
           "处理完以后天天回访让我给好评，属于回访骚扰",
           "客服回访一天打好几次电话",
           weak_to="投诉无回应",
           vague=("问题没解决，电话倒是打了不少",
                  "只会问我满意不满意，正事一件不办")),
    ],
    "平台经营": [
        _l("平台跑路", 1,
           "平台跑路了，APP打不开，钱拿不回来",
           "听说平台老板已经跑路了，办公室人去楼空",
           "{app}疑似跑路，官网都访问不了",
           "平台跑路以后投资人的钱全没了"),
        _l("账户冻结", 1,
           "账户突然被冻结了，里面还有{amt}元",
           "没有任何理由就冻结了我的账户",
           "账户冻结{days}天了，问什么时候解冻也不说"),
        _l("无法登录", 2,
           "APP一直无法登录，提示账号异常",
           "换了手机以后就无法登录了，验证码也收不到"),
        _l("系统故障", 2,
           "系统故障导致还款失败，却算我逾期",
           "还款日当天系统故障，一直转圈",
           "他们的系统故障导致我的账单出错"),
        _l("平台清退", 3,
           "平台宣布清退，本金只兑付{pct}%",
           "平台说是良性退出，清退方案对出借人很不公平"),
        _l("资质不全", 4,
           "查了一下这个平台根本没有放贷资质",
           "平台资质不全，营业执照上没有金融业务",
           weak_to="套路贷",
           vague=("在网上根本查不到这家公司的备案",
                  "问他们是哪家公司，说不清楚")),
        _l("借款无法到账", 2,
           "借款审批通过了，钱却一直不到账",
           "显示放款成功，银行卡里没有钱，借款无法到账"),
        _l("数据篡改", 4,
           "后台数据被篡改，账单金额凭空多了{fee}元",
           "我的借款记录被后台篡改了",
           "还款记录被篡改，明明还过的账单变成了未还"),
        _l("应用下架", 4,
           "应用商店已经把这个应用下架了，搜不到",
           "应用下架以后就没法还款，也没法查账单",
           weak_to="平台跑路",
           vague=("现在手机上打不开了，一直提示更新",
                  "找不到地方查自己的账")),
        _l("强制下款", 3,
           "我只是点开看了一下额度，平台就强制下款，打了{amt}元到我卡上",
           "没有确认借款就被强制下款，现在要我按期还本付息",
           "拒绝借款以后还是强制下款，还扣了一笔服务费"),
        _l("冒充官方", 3,
           "有人冒充平台官方客服，说要帮我注销账户",
           "接到冒充官方的电话，说我的账户异常"),
    ],
    "合同/协议": [
        _l("合同条款不公", 2,
           "合同条款不公，违约责任全在借款人",
           "合同里的条款明显不公平，全是保护平台的",
           "合同条款规定所有解释权归平台，这不公平",
           "签合同的时候没人解释条款"),
        _l("未签合同放款", 3,
           "未签合同就放款，我连合同内容都不知道",
           "我没有签任何合同，钱就打过来了",
           "没签合同就放款，现在又要我按他们的规矩还"),
        _l("格式条款", 4,
           "协议都是格式条款，加重了我的责任",
           "格式条款写得密密麻麻，重要内容没有提示",
           weak_to="合同条款不公",
           vague=("协议好几十页，根本看不完",
                  "重要的地方字特别小")),
        _l("电子签名冒用", 4,
           "电子签名不是我本人签的，被冒用了",
           "合同上的电子签名是别人冒用我的身份签的"),
        _l("合同金额不符", 3,
           "合同金额和实际到账金额不符，差了{fee}元",
           "合同写的借款金额是{amt}元，实际到账{amt2}元，金额不符"),
        _l("阴阳合同", 4,
           "签了两份合同，一份给我看一份留底，就是阴阳合同",
           "平台跟我签的是阴阳合同，金额不一样",
           weak_to="套路贷",
           vague=("我手上那份和他们拿出来的不一样",
                  "他们说的和签的完全是两回事")),
        _l("套路贷", 1,
           "这明显是套路贷，借{amt2}元要还{amt3}元",
           "先让你借，再让你借新还旧，就是套路贷",
           "套路贷一环扣一环，我已经被套进去了",
           "借一个平台还不上，就介绍我去另一个平台借，套路贷"),
        _l("借款合同纠纷", 2,
           "因为借款的合同纠纷，已经准备起诉",
           "借款合同有纠纷，平台不给合理解释",
           "对借款合同的内容有争议，要求重新核算"),
        _l("合同无法查看", 3,
           "借款合同在APP里无法查看，一直显示加载中",
           "要求查看合同，平台说不提供"),
        _l("单方修改协议", 3,
           "平台单方修改协议，也没有通知我",
           "利率被单方修改了，协议说改就改"),
    ],
}

GROUPS: list[str] = list(_TABLE)
_SPECS: list[_Spec] = [s for specs in _TABLE.values() for s in specs]
LABELS: list[str] = [s.name for s in _SPECS]
LABEL_GROUPS: dict[str, str] = {s.name: g for g, specs in _TABLE.items() for s in specs}
_INDEX: dict[str, int] = {name: i for i, name in enumerate(LABELS)}

# Thematic clusters across groups: a scenario may pull in any member of its anchor's clusters.
_CLUSTERS: list[tuple[str, ...]] = [
    ("利率争议", "砍头息", "服务费过高", "综合年化超标", "息费不透明", "担保费争议", "会员费捆绑",
     "手续费争议", "强制搭售保险", "合同金额不符", "虚假宣传", "免息误导"),
    ("逾期费用", "违约金计算", "信用卡逾期", "征信异常", "暴力催收", "频繁来电", "逾期记录错误",
     "还款金额错误"),
    ("暴力催收", "通讯录爆破", "骚扰第三方", "恐吓威胁", "侮辱谩骂", "频繁来电", "上门催收",
     "催收短信轰炸", "冒充公检法催收", "隐私泄露", "投诉无回应"),
    ("套路贷", "砍头息", "阴阳合同", "未签合同放款", "暴力催收", "利率争议", "资质不全", "合同条款不公",
     "强制下款"),
    ("征信异常", "征信未消除", "逾期记录错误", "征信报告错误", "未经授权查询征信", "大数据黑名单",
     "结清证明难开", "身份冒用"),
    ("自动扣款", "重复扣款", "扣款未入账", "支付失败扣款", "还款金额错误", "系统故障", "退款纠纷",
     "银行卡解绑困难", "免密支付争议"),
    ("提现到账问题", "提现失败", "提现手续费", "账户冻结", "充值未到账", "客服失联"),
    ("平台跑路", "本金兑付延期", "赎回困难", "非法集资", "平台清退", "客服失联", "无法登录", "虚假宣传"),
    ("理财产品亏损", "承诺保本", "收益不符宣传", "高风险产品误导", "虚假宣传", "私募违规"),
    ("虚拟币投资骗局", "荐股诈骗", "征信修复诈骗", "冒充官方", "信用卡套现", "代理办卡收费", "隐私泄露",
     "短信验证码泄露"),
    ("强制搭售保险", "退保纠纷", "理赔困难", "保险拒赔", "保费误导", "自动续保", "保险销售误导",
     "健康告知争议", "退保手续费"),
    ("信用卡分期费率", "年费争议", "额度被降", "信用卡停卡", "最低还款陷阱", "账单分期争议", "信用卡盗刷",
     "积分兑换纠纷", "信用卡逾期"),
    ("隐私泄露", "个人信息滥用", "过度索权", "人脸信息采集", "骚扰电话推销", "注销账号困难", "广告骚扰"),
    ("自动续费", "诱导开通会员", "会员费捆绑", "默认勾选", "优惠券不兑现", "虚假额度", "邀请返现不兑现",
     "诱导借款", "退款纠纷"),
    ("客服失联", "投诉无回应", "客服态度差", "人工客服难接通", "推诿扯皮", "处理进度缓慢", "承诺未兑现",
     "工单被关闭", "客服诱导删帖", "机器人客服敷衍"),
    ("账户冻结", "无法登录", "系统故障", "借款无法到账", "数据篡改", "冒充官方"),
    ("合同条款不公", "借款合同纠纷", "单方修改协议", "合同无法查看", "电子签名冒用", "未签合同放款"),
]

# Curated strong pairs: (anchor, partner, P(partner in the scenario | anchor)). Directional,
# because real dependence is: 违约金计算 almost always comes with 逾期费用, not the reverse.
_PAIRS: list[tuple[str, str, float]] = [
    ("逾期费用", "违约金计算", 0.55), ("违约金计算", "逾期费用", 0.75),
    ("利率争议", "暴力催收", 0.3), ("暴力催收", "利率争议", 0.3),
    ("砍头息", "利率争议", 0.6), ("利率争议", "砍头息", 0.25), ("砍头息", "合同金额不符", 0.2),
    ("通讯录爆破", "暴力催收", 0.7), ("通讯录爆破", "隐私泄露", 0.5), ("暴力催收", "通讯录爆破", 0.35),
    ("骚扰第三方", "通讯录爆破", 0.5), ("隐私泄露", "通讯录爆破", 0.2), ("恐吓威胁", "暴力催收", 0.6),
    ("侮辱谩骂", "暴力催收", 0.6), ("频繁来电", "暴力催收", 0.4),
    ("套路贷", "砍头息", 0.5), ("套路贷", "暴力催收", 0.5),
    ("平台跑路", "客服失联", 0.5), ("平台跑路", "提现到账问题", 0.3), ("平台跑路", "非法集资", 0.25),
    ("账户冻结", "提现失败", 0.3), ("提现到账问题", "客服失联", 0.25), ("提现失败", "提现到账问题", 0.4),
    ("强制搭售保险", "利率争议", 0.3), ("退保纠纷", "强制搭售保险", 0.5),
    ("自动续费", "退款纠纷", 0.35), ("诱导开通会员", "自动续费", 0.4), ("会员费捆绑", "自动续费", 0.3),
    ("客服失联", "投诉无回应", 0.4), ("推诿扯皮", "投诉无回应", 0.4),
    ("逾期记录错误", "征信异常", 0.7), ("征信未消除", "征信异常", 0.6), ("身份冒用", "征信异常", 0.5),
    ("信用卡逾期", "暴力催收", 0.3), ("信用卡逾期", "逾期费用", 0.3),
    ("本金兑付延期", "平台跑路", 0.3), ("非法集资", "平台跑路", 0.4),
    ("虚假宣传", "利率争议", 0.2), ("服务费过高", "利率争议", 0.4), ("综合年化超标", "利率争议", 0.6),
    ("重复扣款", "退款纠纷", 0.4), ("系统故障", "逾期费用", 0.3),
]

# The most common complaints, most common first (the rest are ranked by tier).
_HEAD_ORDER = ("暴力催收", "利率争议", "逾期费用", "砍头息", "征信异常", "提现到账问题", "客服失联", "退款纠纷",
               "通讯录爆破", "自动续费", "强制搭售保险", "平台跑路", "投诉无回应", "虚假宣传", "隐私泄露",
               "账户冻结", "套路贷")
_TIER_FACTOR = {1: 1.0, 2: 0.55, 3: 0.25, 4: 0.015}
_CLUSTER_PARTNERS = 0.3  # expected number of loose cluster partners per scenario
# Anchor law: Zipf with an exponential cut-off, w(r) = r^-a * exp(-r / tau). A pure power law
# cannot give both a head of ~10% of complaints and a tail that ends below 100 at N = 120k.
_ZIPF_A = 0.5
_ZIPF_TAU = 44.0
_SECOND_SCENARIO = 0.15  # chance that a complaint mixes in a second, unrelated scenario
_WEAK_PAIR = 0.85  # P(head | weak tail label)
MAX_LABELS = 5


def _zipf_ranks() -> list[int]:
    """Popularity rank per label: by tier, and within a tier round-robin over the groups."""
    order: list[tuple[int, int, int]] = []
    for g, specs in enumerate(_TABLE.values()):
        seen: Counter[int] = Counter()
        for spec in specs:
            within = _HEAD_ORDER.index(spec.name) if spec.tier == 1 else seen[spec.tier]
            order.append((spec.tier, within, g))
            seen[spec.tier] += 1
    keyed = sorted(range(len(order)), key=lambda i: order[i])
    ranks = [0] * len(order)
    for rank, i in enumerate(keyed, start=1):
        ranks[i] = rank
    return ranks


def _build_scenarios() -> list[list[tuple[int, float]]]:
    partners: list[dict[int, float]] = [{} for _ in LABELS]
    for cluster in _CLUSTERS:
        for a in cluster:
            others = [b for b in cluster if b != a]
            norm = sum(_TIER_FACTOR[_SPECS[_INDEX[b]].tier] for b in others)
            for b in others:
                p = _CLUSTER_PARTNERS * _TIER_FACTOR[_SPECS[_INDEX[b]].tier] / norm
                ia, ib = _INDEX[a], _INDEX[b]
                partners[ia][ib] = max(partners[ia].get(ib, 0.0), p)
    for a, b, p in _PAIRS:
        partners[_INDEX[a]][_INDEX[b]] = max(partners[_INDEX[a]].get(_INDEX[b], 0.0), p)
    for spec in _SPECS:
        if spec.weak_to:
            partners[_INDEX[spec.name]][_INDEX[spec.weak_to]] = _WEAK_PAIR
    return [sorted(p.items()) for p in partners]


def _check_table() -> None:
    if len(LABELS) != 135 or len(set(LABELS)) != 135:
        raise AssertionError(f"taxonomy must have 135 distinct labels, has {len(set(LABELS))}")
    heads = {s.name for s in _SPECS if s.tier == 1}
    if heads != set(_HEAD_ORDER):
        raise AssertionError(f"_HEAD_ORDER must list the tier-1 labels: {sorted(heads ^ set(_HEAD_ORDER))}")
    named = {n for c in _CLUSTERS for n in c} | {n for a, b, _ in _PAIRS for n in (a, b)}
    named |= {s.weak_to for s in _SPECS if s.weak_to}
    unknown = named - set(LABELS)
    if unknown:
        raise AssertionError(f"unknown labels in clusters/pairs: {sorted(unknown)}")


_check_table()
_RANKS = _zipf_ranks()
_ANCHOR_WEIGHTS = [r ** -_ZIPF_A * math.exp(-r / _ZIPF_TAU) for r in _RANKS]
_ANCHOR_CUM = list(itertools.accumulate(_ANCHOR_WEIGHTS))
_SCENARIOS = _build_scenarios()
_WEAK_HEAD: dict[int, int] = {_INDEX[s.name]: _INDEX[s.weak_to] for s in _SPECS if s.weak_to}
_WEAK_OF: dict[str, list[int]] = {}
for _weak, _head in _WEAK_HEAD.items():
    _WEAK_OF.setdefault(LABELS[_head], []).append(_weak)


def _draw_anchor(rng: random.Random) -> int:
    return bisect.bisect_right(_ANCHOR_CUM, rng.random() * _ANCHOR_CUM[-1])


def _sample_one(rng: random.Random) -> list[int]:
    anchor = _draw_anchor(rng)
    chosen = [anchor]
    for j, p in _SCENARIOS[anchor]:
        if rng.random() < p:
            chosen.append(j)
    if rng.random() < _SECOND_SCENARIO:
        second = _draw_anchor(rng)
        extra = [second] + [j for j, p in _SCENARIOS[second] if rng.random() < p]
        chosen.extend(j for j in extra if j not in chosen)
    # A weak tail label pulled in as someone else's partner still brings its head label.
    for j in chosen[1:]:
        head = _WEAK_HEAD.get(j)
        if head is not None and head not in chosen and rng.random() < _WEAK_PAIR:
            chosen.append(head)
    if len(chosen) > MAX_LABELS:
        # The anchor stays; which of the rest survive is random so no partner is favoured.
        rest = chosen[1:]
        rng.shuffle(rest)
        chosen = [anchor] + rest[: MAX_LABELS - 1]
    return chosen


def _label_rng(seed: int) -> random.Random:
    # String seeds are hashed with SHA-512 by random.Random, so they are stable across runs
    # and independent of PYTHONHASHSEED.
    return random.Random(f"fmlc-synth/labels/{seed}")


def _text_rng(seed: int) -> random.Random:
    return random.Random(f"fmlc-synth/text/{seed}")


def sample_label_sets(n: int, seed: int) -> list[list[str]]:
    """The label sets that ``generate(n, seed)`` produces, without building the texts."""
    rng = _label_rng(seed)
    return [[LABELS[i] for i in _sample_one(rng)] for _ in range(n)]


# --------------------------------------------------------------------------------------------
# Text

_APPS = (
    "橙意借", "青柚钱包", "朗朗分期", "好运来贷", "金豆豆", "米粒花", "云朵金融", "小鹿分期", "北斗钱庄",
    "鑫荣易贷", "速米花", "安心借呗呗", "蜜桃钱包", "星河贷", "快鱼借款", "豆芽金服", "柠檬白条", "大象分期",
    "火山借", "团圆钱包", "飞鲸金融", "麦穗贷", "暖阳分期", "闪兔借钱", "稻香理财", "海螺钱包", "七彩花",
    "晨星金服", "如意借", "萤火虫贷", "锦鲤分期", "向日葵钱包", "银杏理财", "元宝借", "花猫白条", "顺风借",
)
_BANKS = ("某股份制银行", "某城商行", "本地农商行", "某国有大行", "一家民营银行")
_INSURERS = ("瑞禾保险", "安顺人寿", "康泰财险", "福佑保险", "百川人寿")


def _amount(rng: random.Random) -> int:
    return rng.choice((500, 800, 1000, 1500, 2000, 3000, 5000, 6000, 8000, 10000, 20000, 30000, 50000))


_SLOT_MAKERS = {
    "app": lambda r, s: r.choice(_APPS),
    "app2": lambda r, s: r.choice([a for a in _APPS if a != s["app"]]),
    "amt": lambda r, s: _amount(r),
    "amt2": lambda r, s: int(s["amt"] * r.uniform(0.6, 0.85)) // 10 * 10,
    "amt3": lambda r, s: int(s["amt"] * r.uniform(1.3, 1.9)) // 10 * 10,
    "fee": lambda r, s: r.choice((29, 39, 68, 99, 128, 199, 240, 300, 388, 450, 600, 880, 1200)),
    "pct": lambda r, s: r.randint(8, 45),
    "apr": lambda r, s: r.choice((36, 48, 60, 72, 98, 120, 150, 200)),
    "days": lambda r, s: r.choice((1, 2, 3, 5, 7, 10, 15, 20, 30, 45, 60, 90)),
    "months": lambda r, s: r.choice((3, 6, 9, 12, 18, 24, 36)),
    "n": lambda r, s: r.choice((3, 5, 8, 10, 20, 30, 50, 100)),
    "phone": lambda r, s: f"1{r.choice('3456789')}{r.randint(0, 9)}****{r.randint(0, 9999):04d}",
    "tail4": lambda r, s: f"{r.randint(0, 9999):04d}",
    "bank": lambda r, s: r.choice(_BANKS),
    "ins": lambda r, s: r.choice(_INSURERS),
    "date": lambda r, s: r.choice((
        f"{r.randint(2019, 2024)}年{r.randint(1, 12)}月{r.randint(1, 28)}日",
        f"{r.randint(1, 12)}月{r.randint(1, 28)}号",
        f"{r.randint(2019, 2024)}.{r.randint(1, 12)}.{r.randint(1, 28)}",
        "上个月", "去年年底", "今年年初", "前几天", "上周",
    )),
}


class _Slots(dict):
    """Slot values drawn on first use, so one complaint keeps one platform, one amount …"""

    def __init__(self, rng: random.Random) -> None:
        super().__init__()
        self._rng = rng

    def __missing__(self, key: str) -> object:
        value = _SLOT_MAKERS[key](self._rng, self)
        self[key] = value
        return value


_OPENERS: dict[str, tuple[str, ...]] = {
    "loan": (
        "我在{date}通过{app}借了{amt}元，分{months}期还款。",
        "本人于{date}在{app}申请借款{amt}元，期限{months}个月。",
        "去年急用钱，在{app}上借了{amt}块钱。",
        "{app}借款{amt}，分{months}期，",
        "我是{app}的老用户了，{date}借过一笔{amt}元的贷款。",
        "投诉对象：{app}。",
        "我要投诉{app}这个借款平台！",
        "{date}在{app}上借了钱，",
    ),
    "pay": (
        "我在{app}绑定了尾号{tail4}的银行卡。",
        "{date}我在{app}操作了一笔{amt}元的交易。",
        "我在{app}里有{amt}元余额。",
        "投诉{app}，",
    ),
    "invest": (
        "{date}在{app}购买了{amt}元的理财产品，期限{months}个月。",
        "朋友推荐我在{app}上投资，前前后后投了{amt}元。",
        "本人是{app}的出借人，出借本金{amt}元。",
        "看了广告以后在{app}投了一笔钱，",
    ),
    "insure": (
        "{date}在{app}借款时买了一份保险。",
        "我在{app}投保了一份{ins}的保险，",
        "家里人在{app}上买过{ins}的产品，",
    ),
    "card": (
        "我有一张{bank}的信用卡，尾号{tail4}。",
        "我的{bank}信用卡用了{n}年了，",
        "{date}办了一张{bank}的信用卡，",
    ),
    "any": (
        "我要投诉{app}！",
        "各位评评理，",
        "实在忍不了了，来这里投诉。",
        "第一次在这里发帖，",
        "想问问大家遇到过这种情况没有，",
        "我是{app}的用户，",
        "",
    ),
}
_GROUP_OPENER = {
    "借贷费用": "loan", "催收": "loan", "征信": "loan", "合同/协议": "loan", "平台经营": "loan",
    "支付/提现": "pay", "理财/投资": "invest", "保险": "insure", "信用卡": "card",
    "个人信息": "any", "营销": "any", "客服": "any",
}

# Sentences that belong to a topic but do not tell its labels apart.
_GROUP_CONTEXT: dict[str, tuple[str, ...]] = {
    "借贷费用": ("算下来要还的钱比借的多了一大截", "各种费用加起来根本算不清", "我只想知道到底要还多少钱"),
    "催收": ("最近天天有人打电话找我", "电话一响我就害怕", "家里人都被吵得不得安宁"),
    "征信": ("现在贷款买房都受影响", "银行那边说我的记录有问题", "这个记录要跟我好几年"),
    "支付/提现": ("钱就这么卡在里面了", "银行说他们那边没问题", "流水我都截图了"),
    "理财/投资": ("这是我全部的积蓄", "当初就是看中了收益高", "现在每天都在群里等消息"),
    "保险": ("保险这块我完全不懂", "合同里那些条款根本看不明白", "钱交了什么保障都没有"),
    "信用卡": ("信用卡一直是按时还的", "打银行客服也没用", "我用卡一直很规范"),
    "个人信息": ("现在感觉自己毫无隐私可言", "资料交出去就收不回来了", "陌生电话越来越多"),
    "营销": ("广告说得好听", "当时也没仔细看就点了", "这些套路防不胜防"),
    "客服": ("每次找他们都是这样", "问题到现在都没有解决", "我已经不知道还能找谁了"),
    "平台经营": ("现在什么都查不到了", "平台一直不给说法", "很多人都遇到了同样的问题"),
    "合同/协议": ("合同是在手机上点的", "当时着急用钱就签了", "签的东西我到现在都没拿到"),
}

_FILLERS = (
    "我现在每天都睡不好觉", "家里人都因为这个事跟我吵架", "本来就是为了应急才借的钱", "工作都快保不住了",
    "真的是欺人太甚", "我一个打工的哪里经得起这样折腾", "希望大家引以为戒，不要再上当了",
    "所有的聊天记录和截图我都保留了", "已经向金融监管部门反映过了", "这种平台怎么还能继续营业",
    "我不是不还钱，只是要求合理合法", "这两年收入减少，还款确实有困难", "孩子还小，老人身体也不好",
    "打了{n}次电话都没用", "钱不多但是咽不下这口气", "其他平台上我也发过帖子了", "说实话我都快崩溃了",
    "不知道还有没有王法", "身边好几个朋友都遇到过这种事", "我也不是第一次遇到这种情况了",
    "这件事拖了快{months}个月了", "我每个月工资才几千块", "当初真不该在这种平台借钱",
    "哎，说多了都是泪", "以前觉得这种事离我很远", "现在想想真是后悔", "我上网查了一下，投诉的人很多",
    "不是我不讲理，是他们太过分了", "我老婆到现在还不知道这件事", "我是真的没办法了才来发帖",
    "请大家帮忙看看该怎么办", "他们就是欺负我们老百姓不懂", "我一直都很讲诚信", "真是越想越生气",
    "家里的积蓄都搭进去了", "本来日子就过得紧巴巴", "我已经咨询过律师了", "事情是这样的",
    "有没有人和我情况一样的", "我联系了{app2}的朋友，他说那边也一样",
)
_BACKGROUND = (
    "当时家里有人生病，急需用钱", "因为做生意资金周转不过来才去借的", "本来以为是正规平台，没想到是这样",
    "看到广告说利息低、放款快就下载了", "那段时间刚换工作，手头比较紧", "一开始一直都是按时还款的",
    "是朋友介绍我用这个APP的", "我之前从来没有在网上借过钱", "在短视频里刷到的广告，点进去就注册了",
    "我一直以为这是银行的产品", "刚开始用的时候体验还挺好的", "注册的时候填了身份证、银行卡和联系人",
    "当时客服说得天花乱坠", "我对这些金融产品本来就不太懂", "后来因为疫情收入受了影响",
)
# What the complainant did about it: complaint narratives nearly always tell this part.
_PROCESS = (
    "{date}我联系了客服，客服说会在{days}个工作日内给答复", "我把借款合同、还款记录和通话录音都整理好了",
    "我打了{n}次电话，每次都说已经记录了，让我回去等通知", "在APP里留言反馈，到现在都没有一个人回复我",
    "客服工号换了好几个，每个人说的都不一样", "我让他们出示书面的说明材料，他们说只能口头解释",
    "我给他们的官方邮箱发了邮件，也没有人回", "我去当地的派出所咨询过，说这个要去法院起诉",
    "我在{date}已经打过12378和银行的客服热线", "我按照他们说的提交了身份证照片、银行流水和截图",
    "问他们要一个明细，说系统里查不到", "他们说会把我的情况上报给上级部门处理",
    "后来又换了一个号码{phone}打过来，说的还是那一套", "我跟他们协商过好几次，对方一直不松口",
    "对方最后说处理不了，让我自己去找合作方",
)
_CLOSINGS = (
    "请求平台退还多收取的费用！", "希望监管部门严查！", "要求立即停止骚扰并公开道歉。",
    "请尽快给我一个合理的解决方案。", "如果再不处理我就去法院起诉。", "恳请相关部门帮忙处理，谢谢！",
    "诉求：退还{fee}元，并消除不良影响。", "希望能有人管一管。", "要求平台给个说法！",
    "请还我一个公道。", "希望早日解决。", "我的诉求很简单，按合同办事。",
    "希望平台尽快联系我，电话{phone}。", "再不解决我就去找媒体曝光，让更多人知道你们的真面目！",
    "要求：一、退还不合理费用；二、停止骚扰；三、给出书面答复。", "麻烦监管部门核实一下这家公司的资质，谢谢。",
)
_CONNECTORS = ("", "", "", "而且", "更过分的是，", "另外，", "还有，", "最离谱的是", "不仅如此，",
               "后来", "结果", "关键是", "我发现", "然后")
_ENDS = ("。", "。", "。", "。", "！", "！！", "!!!", "？？", "…", "。。。", "，", "😡", "😭", "🙏", "💢",
         "！！！😤", "?!")
_HEARSAY = ("听说别的平台也有{label}的问题，", "之前看新闻说有{label}的事，没想到", "朋友说他遇到过{label}，",
            "不知道这算不算{label}，")
_TYPOS = (("账", "帐"), ("已经", "以经"), ("在", "再"), ("根本", "跟本"), ("什么", "啥"), ("怎么", "咋"),
          ("逾期", "预期"), ("催收", "摧收"), ("的", "滴"))
_FULLWIDTH = {c: c + 0xFEE0 for c in range(0x21, 0x7F)}


def _sentence(rng: random.Random, body: str, slots: _Slots, connect: bool = True) -> str:
    head = rng.choice(_CONNECTORS) if connect else ""
    return head + body.format_map(slots) + rng.choice(_ENDS)


def _render(rng: random.Random, label_idx: list[int]) -> str:
    slots = _Slots(rng)
    specs = [_SPECS[i] for i in label_idx]
    parts: list[str] = []
    rant = rng.random() < 0.05

    if rng.random() < 0.85:
        pool = _OPENERS[_GROUP_OPENER[LABEL_GROUPS[specs[0].name]]]
        if rng.random() < 0.25:
            pool = _OPENERS["any"]
        parts.append(rng.choice(pool).format_map(slots))
    if rng.random() < 0.65:
        parts.append(_sentence(rng, rng.choice(_BACKGROUND), slots, connect=False))

    if rng.random() < 0.1:
        other = rng.choice(LABELS)
        if other not in {s.name for s in specs}:
            parts.append(rng.choice(_HEARSAY).format(label=other))

    order = specs[:]
    if len(order) > 1 and rng.random() < 0.5:
        rng.shuffle(order)
    first = True
    for spec in order:
        if spec.weak_to:
            u = rng.random()
            if u < 0.45:
                bodies = [rng.choice(spec.cues)]
            elif u < 0.8:
                bodies = [rng.choice(spec.vague)]
            else:
                bodies = []
        else:
            u = rng.random()
            if u < 0.1:
                bodies = []
            elif u < 0.2:
                bodies = [rng.choice(_GROUP_CONTEXT[LABEL_GROUPS[spec.name]])]
            else:
                bodies = [rng.choice(spec.cues)]
                if rant or rng.random() < 0.4:
                    second = rng.choice(spec.cues)
                    if second != bodies[0]:
                        bodies.append(second)
        for body in bodies:
            parts.append(_sentence(rng, body, slots, connect=not first))
            first = False
        # A weak label's vague sentences also show up without it, next to its head label,
        # so that they are evidence for the pair rather than for the tail label alone.
        for weak in _WEAK_OF.get(spec.name, ()):
            if weak not in label_idx and rng.random() < 0.08:
                parts.append(_sentence(rng, rng.choice(_SPECS[weak].vague), slots))

    for _ in range(rng.choice((0, 1, 1, 2, 2, 3))):
        parts.append(_sentence(rng, rng.choice(_PROCESS), slots, connect=rng.random() < 0.3))
    # Side remarks: people mention a related problem in passing without it being what the
    # complaint is about, and annotators leave it out. Such remarks follow the anchor's
    # scenario, so they look like the labels that usually co-occur.
    if rng.random() < 0.2:
        partners = [(j, p) for j, p in _SCENARIOS[label_idx[0]] if j not in label_idx]
        if partners:
            side = rng.choices([j for j, _ in partners], weights=[p for _, p in partners])[0]
            parts.append(_sentence(rng, rng.choice(_SPECS[side].cues), slots))
    n_fill = rng.choice((0, 1, 2, 2, 2, 3, 3, 3, 4, 5))
    if rant:
        n_fill += rng.randint(4, 9)
    for _ in range(n_fill):
        if rng.random() < 0.3:
            body = rng.choice(_GROUP_CONTEXT[LABEL_GROUPS[rng.choice(specs).name]])
        else:
            body = rng.choice(_FILLERS)
        parts.insert(rng.randint(1 if parts else 0, len(parts)), _sentence(rng, body, slots, connect=False))

    if rng.random() < 0.85:
        parts.append(rng.choice(_CLOSINGS).format_map(slots))
    if not parts:
        parts.append(_sentence(rng, rng.choice(specs[0].cues), slots, connect=False))
    return _noise(rng, "".join(parts))


def _noise(rng: random.Random, text: str) -> str:
    if rng.random() < 0.15:
        right, wrong = rng.choice(_TYPOS)
        text = text.replace(right, wrong, 1)
    if rng.random() < 0.08:
        text = text.translate(_FULLWIDTH)
    if rng.random() < 0.05:
        cut = rng.randint(0, len(text))
        text = text[:cut] + rng.choice((" ", "  ", "\u3000", "\u200b")) + text[cut:]
    return text


def iter_records(n: int, seed: int) -> Iterator[dict]:
    """Yield ``n`` complaints ``{"id", "text", "labels"}``; the same ``(n, seed)`` gives the same data."""
    if n < 0:
        raise ValueError("n must be >= 0")
    label_rng, text_rng = _label_rng(seed), _text_rng(seed)
    for k in range(1, n + 1):
        idx = _sample_one(label_rng)
        yield {"id": f"syn-{k:06d}", "text": _render(text_rng, idx), "labels": [LABELS[i] for i in idx]}


def generate(n: int, seed: int) -> list[dict]:
    return list(iter_records(n, seed))


def write_jsonl(path: str | Path, n: int, seed: int) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for rec in iter_records(n, seed):
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
    return path


def anchor_probabilities() -> dict[str, float]:
    """P(label is the scenario anchor), the Zipf part of the label law."""
    total = _ANCHOR_CUM[-1]
    return {name: w / total for name, w in zip(LABELS, _ANCHOR_WEIGHTS, strict=True)}


def describe(records: list[dict], tokenizer: Tokenizer | None = None) -> dict:
    """Summary statistics of a generated (or any labelled) set of records."""
    counts = Counter(label for r in records for label in r["labels"])
    sizes = Counter(len(r["labels"]) for r in records)
    out: dict = {
        "docs": len(records),
        "labels_used": len(counts),
        "labels_per_doc": dict(sorted(sizes.items())),
        "mean_labels": sum(k * v for k, v in sizes.items()) / max(1, len(records)),
        "labels_lt_100": sum(1 for name in LABELS if counts[name] < 100),
        "labels_zero": sum(1 for name in LABELS if counts[name] == 0),
        "min_count": min(counts[name] for name in LABELS),
        "max_count": max(counts.values(), default=0),
    }
    if tokenizer is not None:
        lengths = sorted(len(tokenizer.tokenize(r["text"])) for r in records)
        out["mean_tokens"] = sum(lengths) / max(1, len(lengths))
        out["p50_tokens"] = lengths[len(lengths) // 2]
        out["p99_tokens"] = lengths[min(len(lengths) - 1, math.ceil(0.99 * len(lengths)))]
        out["max_tokens"] = lengths[-1]
    return out


if __name__ == "__main__":
    from training.cli import run_as_module

    run_as_module("synth")
